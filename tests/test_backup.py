"""Backup and restore with real stores: `attest backup` while a server keeps answering, `attest restore` into a
fresh data directory (same point ids, payloads, search answers, manifest and state rows), a backup killed with
SIGKILL part-way (the previous backup stays complete), and the Qdrant-server backend's export."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import DEMO, ROOT, make_settings, point_set, run_cli
from tests.pg_fixture import postgres  # noqa: F401  (fixture)
from tests.test_api_support import ServerThread, wait_until

QUERIES = ["How long is the warranty on the camera body?", "battery charging time", "clean the lens"]
DOCS = ["manual/battery-and-power.md", "manual/getting-started.md", "policies/halden-care-plus.md"]


def _hits(retriever, collection: str = "default") -> dict[str, list[tuple[str, float]]]:
    return {q: [(h.id, round(h.score, 5)) for h in retriever.search(q, collection, 5, "hybrid").hits]
            for q in QUERIES}


def _rows(database: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(str(database))
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _state_rows(data_dir: Path) -> dict:
    return {"jobs": _rows(data_dir / "attest.sqlite", "SELECT id, status, collection, files FROM api_jobs ORDER BY id"),
            "keys": _rows(data_dir / "attest.sqlite", "SELECT key_sha256, tenant, collections FROM api_keys"),
            "manifest": _rows(data_dir / "manifest.sqlite",
                              "SELECT collection, doc_id, file_hash, chunk_ids FROM documents ORDER BY doc_id")}


def _assert_index_is(settings, encoder, points: dict, hits: dict) -> None:
    """The restored embedded index holds exactly ``points`` and answers the searches with ``hits``."""
    from retrieval.search import Retriever
    from retrieval.store import EdgeStore

    store = EdgeStore(settings.edge_dir)
    try:
        assert point_set(store) == points
        assert _hits(Retriever(settings, store, encoder)) == hits
    finally:
        store.close()


def _copy_docs(target: Path, names: list[str]) -> Path:
    for name in names:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes((DEMO / name).read_bytes())
    return target


# ---- backup while serving, restore into a fresh data directory ----------------------------------------
def test_backup_while_serving_then_restore_gives_the_same_points_answers_and_state(tmp_path, encoder):
    from api.app import create_app
    from api.auth import add_key
    from api.backup import ensure_admin_token, read_backup
    from api.server_lock import remove_lock, write_lock
    from api.services import Services
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester
    from retrieval.search import Retriever
    from retrieval.store import EdgeStore

    settings = make_settings(tmp_path / "live", api_auth_mode="open")
    store = EdgeStore(settings.edge_dir)
    manifest = Manifest(settings.manifest_path)
    Ingester(settings, store, manifest, encoder).run([_copy_docs(tmp_path / "docs", DOCS)])
    manifest.close()
    add_key(settings.database_path, "acme", ["default"])

    services = Services.build(settings, store=store, encoder=encoder, grounder=None)
    app = create_app(settings, services=services, configure_logs=False)
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=120) as http:
        port = int(server.url.rsplit(":", 1)[1])
        write_lock(settings, "127.0.0.1", port)  # what `attest serve` writes: the CLI finds the server by it
        try:
            # an upload through the server, finished before the backup: part of the backed-up state
            upload = http.post("/v1/documents", files=[("files", ("faq.md", (DEMO / "support/faq.md").read_bytes()))])
            assert upload.status_code == 202, upload.text
            wait_until(lambda: http.get(upload.json()["status_url"]).json()["status"] == "succeeded", 300, "the upload")

            expected_points = point_set(services.store)
            expected_hits = _hits(Retriever(settings, services.store, encoder))
            expected_state = _state_rows(settings.data_dir)
            assert len({p[0] for p in expected_points.values()}) == len(DOCS) + 1

            # without the token the admin route refuses
            refused = http.post("/v1/admin/backup", json={"target": str(tmp_path / "nope")})
            assert refused.status_code == 403 and "admin.token" in refused.json()["detail"]

            # searches go on, all answered, while `attest backup` (another process) runs through the server
            answered, stop = [], threading.Event()

            def search_loop():
                with httpx.Client(base_url=server.url, timeout=120) as client:
                    while not stop.is_set():
                        answered.append(client.post("/v1/search", json={"query": QUERIES[len(answered) % 3]}).status_code)

            searcher = threading.Thread(target=search_loop)
            searcher.start()
            try:
                done = run_cli("backup", str(tmp_path / "backups"), "--json", data_dir=settings.data_dir)
            finally:
                stop.set()
                searcher.join(120)
            assert "holds the data directory" in done.stderr
            info = json.loads(done.stdout)
            assert info["collections"] == {"default": len(expected_points)}
            assert answered and set(answered) == {200}, answered
            assert ensure_admin_token(settings)  # the CLI created it, mode 0600
            assert oct(os.stat(settings.data_dir / "admin.token").st_mode & 0o777) == "0o600"

            # the live server moves on after the backup: a document deleted
            assert http.delete("/v1/documents/faq.md").status_code == 200
            assert point_set(services.store) != expected_points
        finally:
            remove_lock(settings)
    services.close()

    generation, described = read_backup(tmp_path / "backups")
    assert generation.name == info["name"] and described["backend"] == "edge"

    fresh = make_settings(tmp_path / "restored")
    restored = run_cli("restore", str(tmp_path / "backups"), "--json", data_dir=fresh.data_dir)
    assert json.loads(restored.stdout)["collections"] == {"default": len(expected_points)}
    _assert_index_is(fresh, encoder, expected_points, expected_hits)
    assert _state_rows(fresh.data_dir) == expected_state
    assert (fresh.data_dir / "uploads").is_dir() and list((fresh.data_dir / "uploads").rglob("faq.md"))

    # restoring over a data directory that holds state is refused, naming what is there; --force keeps it aside
    again = run_cli("restore", str(tmp_path / "backups"), data_dir=fresh.data_dir, check=False)
    assert again.returncode == 1 and "already holds" in again.stderr and "--force" in again.stderr
    forced = run_cli("restore", str(tmp_path / "backups"), "--force", data_dir=fresh.data_dir)
    assert "before-restore" in forced.stderr
    assert list(tmp_path.glob("restored.before-restore-*"))


# ---- a backup killed part-way ---------------------------------------------------------------------------
def _bulk_points(n: int, seed: int = 7):
    import numpy as np

    from retrieval.bm25 import SparseVector
    from retrieval.schema import ChunkPoint

    rng = random.Random(seed)
    dense = np.random.default_rng(seed).uniform(-1, 1, (n, 384)).tolist()
    return [ChunkPoint(id=str(uuid.UUID(int=rng.getrandbits(128))), dense=dense[i],
                       sparse=SparseVector([rng.randrange(1000), 1000 + i % 7], [1.0, 0.5]),
                       payload={"doc_id": f"bulk-{i // 50}", "source": "bulk", "tags": [], "text": f"bulk {i}"})
            for i in range(n)]


def _start_backup(folder: Path, data_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "ATTEST_DATA_DIR": str(data_dir)}
    return subprocess.Popen([sys.executable, "-m", "api.cli", "backup", str(folder)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_at(process: subprocess.Popen, step: str) -> list[str]:
    """SIGKILL the backup as soon as it reports ``step``; returns the lines it printed."""
    lines = []
    for line in process.stderr:
        lines.append(line.strip())
        if line.startswith(f"backup: {step}"):
            process.send_signal(signal.SIGKILL)
            break
    process.wait(60)
    return lines


def test_a_backup_killed_part_way_leaves_the_previous_backup_complete(tmp_path, encoder):
    from api.backup import current_generation, read_backup
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester
    from retrieval.store import EdgeStore

    settings = make_settings(tmp_path / "live")
    store = EdgeStore(settings.edge_dir)
    manifest = Manifest(settings.manifest_path)
    Ingester(settings, store, manifest, encoder).run([_copy_docs(tmp_path / "docs", DOCS[:2])])
    manifest.close()
    first_points = point_set(store)
    store.close()
    folder = tmp_path / "backups"
    run_cli("backup", str(folder), data_dir=settings.data_dir)
    first = current_generation(folder)

    # a larger state, so that the next backup has work to be killed in
    store = EdgeStore(settings.edge_dir)
    bulk = _bulk_points(30000)
    for start in range(0, len(bulk), 1000):
        store.upsert("bulk", bulk[start:start + 1000])
    store.close()

    for step in ("state", "index bulk", "uploads", "checksums"):
        process = _start_backup(folder, settings.data_dir)
        lines = _kill_at(process, step)
        assert process.returncode == -signal.SIGKILL, lines
        # every step reported comes before the commit (then: checksums of ~60 MB, fsync, rename, CURRENT)
        assert current_generation(folder) == first, lines
        _, info = read_backup(folder)  # and it is still complete: every file's checksum holds
        assert info["collections"] == {"default": len(first_points)}
        assert list(folder.glob(".partial-*")), "a killed backup leaves its partial folder (cleaned next time)"

    # the previous backup restores exactly, as if nothing had happened
    fresh = make_settings(tmp_path / "restored")
    run_cli("restore", str(folder), data_dir=fresh.data_dir)
    restored = EdgeStore(fresh.edge_dir)
    try:
        assert point_set(restored) == first_points and restored.list_collections() == ["default"]
    finally:
        restored.close()

    # the next backup runs to the end, removes what the killed ones left, and holds the new collection
    run_cli("backup", str(folder), data_dir=settings.data_dir)
    assert not list(folder.glob(".partial-*"))
    assert current_generation(folder) != first and not first.exists()
    _, info = read_backup(folder)
    assert info["collections"] == {"default": len(first_points), "bulk": 30000}


# ---- the Qdrant-server backend ---------------------------------------------------------------------------
def test_a_qdrant_server_backup_is_a_full_export_that_restores_the_same_points_and_answers(tmp_path, encoder):
    """qdrant-client's local mode stands in for the server (the same client calls): every point's id, both
    vectors and payload come back, and the same searches give the same answers."""
    from api.backup import restore_backup, write_backup
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester
    from retrieval.search import Retriever
    from retrieval.store import ServerStore

    settings = make_settings(tmp_path / "live", qdrant_url=":memory:")
    store = ServerStore.connect(":memory:")
    manifest = Manifest(settings.manifest_path)
    Ingester(settings, store, manifest, encoder).run([_copy_docs(tmp_path / "docs", DOCS)])
    manifest.close()
    expected_points, expected_hits = point_set(store), _hits(Retriever(settings, store, encoder))

    info = write_backup(settings, store, tmp_path / "backups")
    assert info["backend"] == "qdrant-server" and info["collections"] == {"default": len(expected_points)}

    fresh = make_settings(tmp_path / "restored", qdrant_url=":memory:")
    target = ServerStore.connect(":memory:")
    result = restore_backup(fresh, tmp_path / "backups", store=target)
    assert result["collections"] == {"default": len(expected_points)}
    assert point_set(target) == expected_points
    assert _hits(Retriever(fresh, target, encoder)) == expected_hits
    manifest_rows = "SELECT collection, doc_id, file_hash, chunk_ids FROM documents ORDER BY doc_id"
    assert _rows(fresh.manifest_path, manifest_rows) == _rows(settings.manifest_path, manifest_rows)

    # an embedded-index data directory cannot take a server export (and says what to set)
    with pytest.raises(Exception, match="ATTEST_QDRANT_URL"):
        restore_backup(make_settings(tmp_path / "other"), tmp_path / "backups")


# ---- state in PostgreSQL -----------------------------------------------------------------------------------
def _pg_state(url: str) -> dict:
    from attest_db import Database

    db = Database(url)
    try:
        return {"jobs": db.all("SELECT id, status, collection, files FROM api_jobs ORDER BY id"),
                "keys": db.all("SELECT key_sha256, tenant, collections FROM api_keys ORDER BY key_sha256"),
                "manifest": db.all("SELECT collection, doc_id, file_hash, chunk_ids FROM documents ORDER BY doc_id"),
                "migrations": db.all("SELECT schema_name, version FROM attest_migrations ORDER BY 1, 2")}
    finally:
        db.close()


def test_with_postgresql_state_the_backup_dumps_the_database_and_restores_it_with_the_index(tmp_path, encoder,
                                                                                        postgres):
    """ATTEST_DATABASE_URL=postgresql://...: the backup holds a pg_dump taken while index writes are paused;
    restore loads it into an empty database (refusing one that holds tables unless --force, which keeps their
    previous contents aside as a dump) beside the same index, and a queued job's staged upload comes along."""
    from datetime import datetime, timezone

    from api.auth import add_key
    from api.backup import BackupError, read_backup, restore_backup, write_backup
    from api.records import Records
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester
    from retrieval.search import Retriever
    from retrieval.store import EdgeStore

    settings = make_settings(tmp_path / "live", database_url=postgres.new_database())
    store = EdgeStore(settings.edge_dir)
    manifest = Manifest(settings.manifest_url)
    Ingester(settings, store, manifest, encoder).run([_copy_docs(tmp_path / "docs", DOCS)])
    manifest.close()
    add_key(settings.state_url, "acme", ["default"])
    records = Records(settings.state_url)
    staged = settings.data_dir / "uploads" / "acme" / "default" / ".incoming"
    for job_id, status in (("job_queued", "queued"), ("job_done", "succeeded")):
        records.save_job({"id": job_id, "tenant": "acme", "collection": "default", "status": status,
                          "created_at": datetime.now(timezone.utc).isoformat(), "files": []})
        (staged / job_id).mkdir(parents=True)
        (staged / job_id / "notes.md").write_text(f"staged for {job_id}\n")
    records.close()
    expected_points, expected_hits = point_set(store), _hits(Retriever(settings, store, encoder))
    expected_state = _pg_state(settings.database_url)
    assert len(expected_state["manifest"]) == len(DOCS) and len(expected_state["jobs"]) == 2

    info = write_backup(settings, store, tmp_path / "backups")
    store.close()
    generation, described = read_backup(tmp_path / "backups")
    assert described["state"] == "postgresql" and "state.pgdump" in described["files"]
    assert not (generation / "attest.sqlite").exists() and not (generation / "manifest.sqlite").exists()
    assert info["collections"] == {"default": len(expected_points)}
    # the staged files of a job not yet run are kept; those of a finished job are not
    assert (generation / "uploads/acme/default/.incoming/job_queued/notes.md").is_file()
    assert not (generation / "uploads/acme/default/.incoming/job_done").exists()

    # a backup of PostgreSQL state goes back into PostgreSQL (and says what to set)
    with pytest.raises(BackupError, match="ATTEST_DATABASE_URL"):
        restore_backup(make_settings(tmp_path / "sqlite-dir"), tmp_path / "backups")

    fresh = make_settings(tmp_path / "restored", database_url=postgres.new_database())
    result = restore_backup(fresh, tmp_path / "backups")
    assert result["state"] == "postgresql" and result["collections"] == {"default": len(expected_points)}
    assert _pg_state(fresh.database_url) == expected_state
    _assert_index_is(fresh, encoder, expected_points, expected_hits)

    # a database that holds tables is refused; --force dumps what it held beside the data directory first
    other = make_settings(tmp_path / "other", database_url=fresh.database_url)
    with pytest.raises(BackupError, match="already holds .* table"):
        restore_backup(other, tmp_path / "backups")
    add_key(fresh.state_url, "later", ["default"])  # a change after the restore, kept aside by --force
    restore_backup(other, tmp_path / "backups", force=True)
    assert _pg_state(fresh.database_url) == expected_state
    kept = list(tmp_path.glob("other.before-restore-*.pgdump"))
    assert len(kept) == 1 and kept[0].stat().st_size > 0

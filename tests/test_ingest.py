"""Ingest: idempotent, incremental, interrupt-safe, and it reports every file it cannot read."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import DEMO, ROOT, point_set, run_cli


def write_corpus(folder, n=6):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"note-{i}.md").write_text(
            f"# Note {i}\n\nThis note is number {i} about topic {i * 7}.\n\n## Details\n\n"
            f"Detail paragraph {i}: the value of parameter P{i} is {i * 13} units.\n"
        )
    return folder


def test_reingest_of_unchanged_folder_writes_nothing(edge_env, tmp_path):
    settings, store, manifest, ingester = edge_env
    corpus = write_corpus(tmp_path / "docs")
    first = ingester.run([corpus])
    assert first.files_ingested == 6 and first.chunks_written > 0
    before = point_set(store)
    second = ingester.run([corpus])
    assert (second.files_ingested, second.files_unchanged) == (0, 6)
    assert second.chunks_written == second.chunks_deleted == second.chunks_embedded == 0
    assert point_set(store) == before


def test_editing_one_file_changes_only_its_chunks(edge_env, tmp_path):
    settings, store, manifest, ingester = edge_env
    corpus = write_corpus(tmp_path / "docs")
    ingester.run([corpus])
    before = point_set(store)
    target = corpus / "note-2.md"
    target.write_text(target.read_text().replace("26 units", "99 units") + "\n## Extra\n\nA brand new section.\n")
    report = ingester.run([corpus])
    after = point_set(store)
    assert (report.files_ingested, report.files_unchanged) == (1, 5)
    changed = {pid for pid in set(before) ^ set(after)}
    assert changed, "the edit must change some chunks"
    docs_touched = {(before.get(pid) or after.get(pid))[0] for pid in changed}
    assert docs_touched == {"note-2.md"}
    # The untouched heading chunk of the edited file was neither re-embedded nor rewritten.
    assert report.chunks_embedded == report.chunks_written == 2
    assert report.chunks_deleted == 1
    assert {v for k, v in before.items() if v[0] != "note-2.md"} == {v for k, v in after.items() if v[0] != "note-2.md"}


def test_deleted_file_is_pruned_only_with_prune(edge_env, tmp_path):
    settings, store, manifest, ingester = edge_env
    corpus = write_corpus(tmp_path / "docs")
    ingester.run([corpus])
    (corpus / "note-4.md").unlink()
    kept = ingester.run([corpus])
    assert kept.documents_pruned == 0
    assert any(v[0] == "note-4.md" for v in point_set(store).values())
    pruned = ingester.run([corpus], prune=True)
    assert pruned.documents_pruned == 1 and pruned.chunks_deleted == 2
    assert not any(v[0] == "note-4.md" for v in point_set(store).values())
    assert manifest.get("default", "note-4.md") is None
    assert len({v[0] for v in point_set(store).values()}) == 5


def test_dry_run_writes_nothing(edge_env, tmp_path):
    settings, store, manifest, ingester = edge_env
    report = ingester.run([write_corpus(tmp_path / "docs")], dry_run=True)
    assert report.files_ingested == 6 and report.chunks_written > 0
    assert store.count("default") == 0 and manifest.entries("default") == []


def _bad_files(folder):
    from pypdf import PdfWriter

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(2048))
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt("secret")
    with open(folder / "locked.pdf", "wb") as fh:
        writer.write(fh)
    (folder / "empty.txt").write_bytes(b"")
    (folder / "junk.txt").write_bytes(b"\x00\x01\x02" + os.urandom(4096))
    (folder / "latin1.md").write_bytes("Caf\xe9 cr\xe8me br\xfbl\xe9e".encode("latin-1"))
    (folder / "broken.docx").write_bytes(b"PK\x03\x04 not really a zip")
    with open(folder / "huge.txt", "wb") as fh:
        fh.truncate(50 * 1024 * 1024)  # 50 MB, over the default 25 MB limit
    return {
        "corrupt.pdf": "corrupt", "locked.pdf": "password-protected", "empty.txt": "empty file",
        "junk.txt": "binary", "latin1.md": "not valid UTF-8", "broken.docx": "corrupt", "huge.txt": "over the",
    }


def test_unreadable_files_are_reported_and_the_rest_ingested(edge_env, tmp_path):
    settings, store, manifest, ingester = edge_env
    corpus = write_corpus(tmp_path / "docs", n=3)
    expected = _bad_files(corpus / "bad")
    (corpus / "image.png").write_bytes(b"\x89PNG")
    (corpus / ".secret.md").write_text("# hidden")
    report = ingester.run([corpus])
    assert report.files_ingested == 3
    assert report.files_failed == len(expected)
    assert (report.files_skipped_unsupported, report.files_skipped_hidden) == (1, 1)
    reasons = {os.path.basename(f["path"]): f["reason"] for f in report.failures}
    for name, fragment in expected.items():
        assert fragment in reasons[name], (name, reasons[name])
    assert {v[0] for v in point_set(store).values()} == {"note-0.md", "note-1.md", "note-2.md"}


def test_cli_exit_code_says_whether_anything_was_read(tmp_path):
    bad = tmp_path / "bad"
    _bad_files(bad)
    proc = run_cli("ingest", str(bad), "--json", data_dir=tmp_path / "data", check=False)
    assert proc.returncode == 1
    summary = json.loads(proc.stdout)
    assert summary["files_failed"] == 7 and summary["files_ingested"] == 0
    missing = run_cli("ingest", str(tmp_path / "nope"), data_dir=tmp_path / "data", check=False)
    assert missing.returncode == 1 and "path does not exist" in missing.stderr


def test_sigkill_during_ingest_then_rerun_gives_the_clean_point_set(tmp_path, encoder):
    from retrieval.store import EdgeStore

    corpus = tmp_path / "many"
    corpus.mkdir()
    for i in range(120):
        (corpus / f"doc-{i:03d}.txt").write_text(
            f"Document {i}. " + " ".join(f"word{(i * 31 + j) % 997}" for j in range(120)) + "\n\n"
            + f"Second part of document {i} mentions item {i * 3}. " * 12)
    env = {**os.environ, "ATTEST_DATA_DIR": str(tmp_path / "killed"), "ATTEST_INGEST_GROUP_CHUNKS": "8",
           "ATTEST_WRITE_BATCH_SIZE": "4"}
    proc = subprocess.Popen([sys.executable, "-m", "api.cli", "ingest", str(corpus), "--json"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest_path = tmp_path / "killed" / "manifest.sqlite"
    import sqlite3

    deadline = time.monotonic() + 300
    written = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest_path.exists():
            try:
                written = sqlite3.connect(str(manifest_path)).execute("SELECT COUNT(*) FROM documents").fetchone()[0]
            except sqlite3.Error:
                written = 0
            if written >= 10:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "ingest finished before it could be killed; make the corpus larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert written < 120

    run_cli("ingest", str(corpus), data_dir=tmp_path / "killed")
    run_cli("ingest", str(corpus), data_dir=tmp_path / "clean")
    killed, clean = EdgeStore(tmp_path / "killed" / "qdrant"), EdgeStore(tmp_path / "clean" / "qdrant")
    try:
        assert point_set(killed) == point_set(clean)
        assert killed.count("default") == clean.count("default") == len(point_set(clean))
    finally:
        killed.close()
        clean.close()


@pytest.mark.skipif(not DEMO.exists(), reason="demo corpus missing")
def test_demo_corpus_gives_same_chunks_on_edge_and_server_backends(tmp_path, encoder):
    from attest_settings import Settings
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester
    from retrieval.store import EdgeStore, ServerStore

    results = []
    for name, store in (("edge", EdgeStore(tmp_path / "edge")), ("server", ServerStore.connect(":memory:"))):
        settings = Settings(data_dir=tmp_path / name)
        manifest = Manifest(settings.manifest_path)
        report = Ingester(settings, store, manifest, encoder).run([DEMO], collection="demo")
        assert report.files_failed == 0, report.failures
        results.append(point_set(store, "demo"))
        store.close()
        manifest.close()
    edge, server = results
    assert len(edge) > 50
    assert edge == server
    formats = {v[0].rsplit(".", 1)[-1] for v in edge.values()}
    assert {"md", "txt", "pdf", "docx", "html"} <= formats
    assert any(v[5] and v[5] >= 2 for v in edge.values()), "a multi-page PDF keeps its page numbers"
    assert any(len(v[4]) >= 2 for v in edge.values()), "Markdown chunks keep their heading path"


def test_search_cli_finds_the_chunk_with_a_unique_phrase(tmp_path):
    corpus = write_corpus(tmp_path / "docs")
    (corpus / "special.md").write_text(
        "# Maintenance\n\nClean the shutter assembly with the zephyr-blue microfiber cloth every 40 days.\n")
    run_cli("ingest", str(corpus), data_dir=tmp_path / "data")
    proc = run_cli("search", "zephyr-blue microfiber cloth", "-k", "3", "--json", data_dir=tmp_path / "data")
    hits = json.loads(proc.stdout)["hits"]
    assert hits[0]["doc_id"] == "special.md"
    assert "zephyr-blue" in hits[0]["text"]

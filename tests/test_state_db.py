"""The state data layer (``attest_db``) and every module that keeps state, each test run on SQLite and on a
real PostgreSQL (``tests/pg_fixture.py``): migrations, the usage ledger, query records and feedback, ingest
jobs claimed by exactly one worker (two processes racing), API keys, claim verdicts (all or none), the
evaluation history, the ingest manifest; an old SQLite file upgraded in place; the HTTP API on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import DEMO, ROOT, make_settings
from tests.pg_fixture import postgres, state_url  # noqa: F401  (fixtures)


# ---- migrations ------------------------------------------------------------------------------------------
def test_migrations_are_applied_once_in_order_and_recorded(state_url):
    from attest_db import Migration, Schema, open_db

    v1 = Migration(1, "notes", "CREATE TABLE IF NOT EXISTS notes (id {id}, body TEXT NOT NULL, weight {float})")
    v2 = Migration(2, "notes: author", "ALTER TABLE notes ADD COLUMN author TEXT")
    db = open_db(state_url, Schema("notes", [v2, v1]))  # given out of order: applied 1 then 2
    db.execute("INSERT INTO notes (body, weight, author) VALUES (?, ?, ?)", ("first", 0.125, "ann"))
    db.close()
    db = open_db(state_url, Schema("notes", [v1, v2]))  # opened again: nothing re-applied (ALTER would fail)
    assert db.all("SELECT schema_name, version, name FROM attest_migrations ORDER BY version") == [
        ("notes", 1, "notes"), ("notes", 2, "notes: author")]
    v3 = Migration(3, "notes: index", "CREATE INDEX notes_author ON notes (author)")
    assert db.migrate(Schema("notes", [v1, v2, v3])) == [3]
    assert db.one("SELECT body, weight, author FROM notes") == ("first", 0.125, "ann")
    row = db.one("INSERT INTO notes (body) VALUES (?) RETURNING id", ("second",))
    assert row[0] == 2
    db.close()


def test_a_failing_transaction_leaves_nothing(state_url):
    from attest_db import Migration, Schema, open_db

    db = open_db(state_url, Schema("t", [Migration(1, "t", "CREATE TABLE t (k TEXT PRIMARY KEY)")]))
    with pytest.raises(Exception):
        with db.transaction():
            db.execute("INSERT INTO t VALUES (?)", ("a",))
            db.execute("INSERT INTO t VALUES (?)", ("a",))  # duplicate key
    assert db.all("SELECT k FROM t") == []
    db.execute("INSERT INTO t VALUES (?)", ("b",))  # the connection is usable afterwards
    assert db.all("SELECT k FROM t") == [("b",)]
    db.close()


# ---- the modules that keep state ---------------------------------------------------------------------------
def test_usage_ledger_sums_tokens_per_key_day_and_org_month(state_url):
    from answer.usage import Principal, UsageLedger, UsageRow

    ledger = UsageLedger(state_url)
    now = datetime(2026, 3, 14, 12, tzinfo=timezone.utc)
    for key, org, day_shift, tokens in (("k1", "acme", 0, 100), ("k1", "acme", 0, 50), ("k2", "acme", 0, 7),
                                        ("k1", "acme", -20, 1000), ("k3", "globex", 0, 9)):
        ledger.record(UsageRow(request_id=f"r{tokens}", principal=Principal(key, org), provider="openai",
                               model="gpt", route="simple", tier="fast", prompt_version="answer@1",
                               prompt_tokens=tokens, completion_tokens=1, cost_usd=0.0001, latency_ms=12.34,
                               outcome="ok"), now=now + timedelta(days=day_shift))
    assert ledger.tokens_for_key_on("k1", "2026-03-14") == 152
    assert ledger.tokens_for_org_in("acme", "2026-03") == 160
    assert ledger.tokens_for_org_in("acme", "2026-02") == 1001
    [row] = ledger.rows_for_request("r7")
    assert row["api_key_id"] == "k2" and row["cost_usd"] == pytest.approx(0.0001) and row["latency_ms"] == 12.3
    ledger.close()


def _response(request_id: str, question: str = "q?", decision: str = "served"):
    body = {"request_id": request_id, "question": question, "decision": decision, "answer": "A.",
            "citations": [{"chunk_id": "c1"}], "sources": [{"chunk_id": "c1", "doc_id": "d"}], "claims": []}
    return SimpleNamespace(**body, model_dump_json=lambda: json.dumps(body))


def test_records_keep_questions_feedback_and_cached_verdicts(state_url):
    from api.records import Records

    records = Records(state_url)
    records.record_query(_response("req_1", "first?"), "acme", "key_a", "docs")
    records.record_query(_response("req_1", "first, again?", "repaired"), "acme", "key_a", "docs")  # upsert
    assert records.query("req_1", "acme")["question"] == "first, again?"
    assert records.query("req_1", "globex") is None
    ids = [records.add_feedback("req_1", "acme", "key_a", rating, None, None, records.query("req_1", "acme"))
           for rating in ("up", "down")]
    assert ids[1] == ids[0] + 1
    assert [f["rating"] for f in records.feedback_for("req_1")] == ["up", "down"]
    records.store_cached_verdicts("entry", {"claims": [1]})
    records.store_cached_verdicts("entry", {"claims": [2]})
    assert records.cached_verdicts("entry") == {"claims": [2]}
    records.close()


def _job(job_id: str, status: str = "queued") -> dict:
    return {"id": job_id, "tenant": "acme", "collection": "docs", "status": status, "created_at": "2026-01-01T00:00:00+00:00",
            "files": [{"name": "a.md", "status": "pending"}], "summary": {}, "error": None}


def test_jobs_are_claimed_by_one_worker_under_a_lease(state_url):
    from api.records import Records

    records = Records(state_url)
    records.save_job(_job("job_1"))
    assert [j["id"] for j in records.unfinished_jobs()] == ["job_1"]
    assert records.claim_job("job_1", "host:1:a", lease_s=60)
    assert not records.claim_job("job_1", "host:2:b", lease_s=60)  # held, lease running
    assert records.renew_job("job_1", "host:1:a", 60) and not records.renew_job("job_1", "host:2:b", 60)
    later = datetime.now(timezone.utc) + timedelta(seconds=120)
    assert records.claim_job("job_1", "host:2:b", lease_s=60, now=later)  # the lease ran out
    assert records.running_job_owners() == {"job_1": "host:2:b"}
    assert records.release_job("job_1", "host:2:b") and records.job("job_1")["status"] == "queued"
    finished = dict(records.job("job_1"), status="succeeded", finished_at="2026-01-01T00:01:00+00:00")
    records.save_job(finished)
    assert not records.claim_job("job_1", "host:3:c", lease_s=60)  # final: nobody takes it
    assert records.job("job_1")["status"] == "succeeded" and records.unfinished_jobs() == []
    records.close()


_CLAIMER = """
import json, os, random, sys, time
from api.records import Records
records = Records(sys.argv[1])
ids = json.loads(sys.argv[2]); random.Random(int(sys.argv[3])).shuffle(ids)
print("ready", flush=True)
while not os.path.exists(sys.argv[4]):  # both start claiming at once
    time.sleep(0.01)
start = time.time()
owner = "worker-" + sys.argv[3]
claimed = [i for i in ids[:1] if records.claim_job(i, owner, 600)]
# a rendezvous, so the rest is claimed while the other is claiming too (150 claims take ~20 ms: without it
# one worker could finish before the other was scheduled at all)
open(sys.argv[4] + "." + sys.argv[3], "w").close()
while not os.path.exists(sys.argv[4] + "." + sys.argv[5]):
    time.sleep(0.001)
claimed += [i for i in ids[1:] if records.claim_job(i, owner, 600)]
print(json.dumps({"claimed": claimed, "start": start, "end": time.time()}))
"""


def test_two_processes_racing_take_each_job_exactly_once(state_url, tmp_path):
    from api.records import Records

    records = Records(state_url)
    ids = [f"job_{n:03d}" for n in range(150)]
    for job_id in ids:
        records.save_job(_job(job_id))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    go = tmp_path / "go"
    workers = [subprocess.Popen([sys.executable, "-c", _CLAIMER, state_url, json.dumps(ids), str(seed), str(go), str(3 - seed)],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for seed in (1, 2)]
    for worker in workers:
        assert worker.stdout.readline().strip() == "ready", worker.stderr.read()[-2000:]
    go.touch()
    results, windows = [], []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-2000:]
        body = json.loads(out)
        results.append(set(body["claimed"]))
        windows.append((body["start"], body["end"]))
    assert not results[0] & results[1], "a job was taken by both workers"
    assert results[0] | results[1] == set(ids)
    # they really raced: each was claiming while the other was (SQLite may let one win every time)
    assert windows[0][0] < windows[1][1] and windows[1][0] < windows[0][1], windows
    owners = records.running_job_owners()
    assert {j for j, o in owners.items() if o == "worker-1"} == results[0]
    records.close()


def test_api_keys_are_added_looked_up_by_digest_and_revoked(state_url, tmp_path):
    from api.auth import KeyStore, add_key, revoke_key

    settings = make_settings(tmp_path / "data", database_url=state_url)
    key = add_key(settings.state_url, "acme", ["docs"], read_only=["shared"])
    keys = KeyStore(settings)
    principal = keys.lookup(key)
    assert principal.tenant == "acme" and principal.can_write("docs") and not principal.can_write("shared")
    assert principal.can_read("shared") and keys.count() == 1 and keys.lookup(key + "x") is None
    assert revoke_key(settings.state_url, key) and keys.lookup(key) is None and keys.count() == 0
    keys.close()


def test_an_answers_verdicts_are_stored_all_or_none(state_url):
    from grounding.store import VerdictStore

    def verdict(claim, score):
        return SimpleNamespace(claim=claim, sentence=0, evidence_ids=["c1"], cited_ids=["c1"], signals={"nli": 0.9},
                               score=score, threshold=0.5, supported=True, citation="ok")

    store = VerdictStore(state_url)
    store.record("req_1", [verdict("A.", 0.9), verdict("B.", 0.8)], "served", "low", "gpt", "answer@1")
    with pytest.raises(Exception):  # the second verdict cannot be stored: neither is
        store.record("req_2", [verdict("C.", 0.7), verdict("D.", object())], "served", "low", "gpt", "answer@1")
    assert [r["claim"] for r in store.for_request("req_1")] == ["A.", "B."]
    assert store.for_request("req_2") == []
    store.close()


def test_the_evaluation_history_keeps_runs_in_order(state_url):
    from evaluation.golden import RunHistory

    history = RunHistory(state_url)
    for run_id in ("zzz", "aaa", "mmm"):  # the same second: kept in the order they were recorded
        history.record(SimpleNamespace(run_id=run_id, created_at="2026-01-01T00:00:00+00:00", golden="g.jsonl",
                                       git_commit="abc", prompts={"answer": "answer@1"}, models={}, scores={"f1": 0.5},
                                       latency_ms={"p50": 1200.0}, cost_usd=None))
    assert [r["run_id"] for r in history.runs("g.jsonl")] == ["zzz", "aaa", "mmm"]
    assert history.runs("other.jsonl") == [] and history.runs()[0]["scores"] == {"f1": 0.5}
    history.close()


def test_the_manifest_puts_replaces_lists_and_deletes(state_url):
    from ingest.manifest import Manifest, ManifestEntry

    manifest = Manifest(state_url)
    entry = ManifestEntry("docs", "a.md", "/x/a.md", "/x", "h1", ["t2", "t1"], "A", ["c1", "c2"], "2026-01-01")
    manifest.put(entry)
    manifest.put(ManifestEntry(**{**entry.__dict__, "file_hash": "h2", "chunk_ids": ["c3"]}))
    manifest.put(ManifestEntry(**{**entry.__dict__, "doc_id": "b.md"}))
    got = manifest.get("docs", "a.md")
    assert (got.file_hash, got.chunk_ids, got.tags) == ("h2", ["c3"], ["t1", "t2"])
    assert [e.doc_id for e in manifest.entries("docs")] == ["a.md", "b.md"] and manifest.entries("other") == []
    manifest.delete("docs", "a.md")
    assert manifest.get("docs", "a.md") is None
    manifest.close()


def test_a_sqlite_file_from_before_migrations_is_upgraded_in_place(tmp_path):
    import sqlite3

    from api.records import Records

    path = tmp_path / "attest.sqlite"
    old = sqlite3.connect(path)
    old.executescript("""CREATE TABLE api_jobs (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, collection TEXT NOT NULL,
        status TEXT NOT NULL, created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, files TEXT NOT NULL,
        summary TEXT NOT NULL, error TEXT);
        INSERT INTO api_jobs VALUES ('job_old', 'acme', 'docs', 'running', '2025-01-01', NULL, NULL, '[]', '{}', NULL);""")
    old.close()
    records = Records(path)
    assert records.job("job_old")["status"] == "running"
    assert records.claim_job("job_old", "host:1:a", 60)  # no owner recorded: free to take
    records.close()


# ---- the service on PostgreSQL ---------------------------------------------------------------------------------
def test_the_api_keeps_all_its_state_in_postgresql(postgres, tmp_path, encoder):
    """Upload, ingest job, document list, question record and feedback, with ATTEST_DATABASE_URL: no SQLite
    file is created in the data directory."""
    import httpx

    from api.app import create_app
    from api.services import Services
    from tests.test_api_support import ServerThread, wait_until

    url = postgres.new_database()
    settings = make_settings(tmp_path / "data", database_url=url, api_auth_mode="open")
    services = Services.build(settings, encoder=encoder, grounder=None)
    app = create_app(settings, services=services, configure_logs=False)
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=120) as http:
        upload = http.post("/v1/documents", files=[("files", ("faq.md", (DEMO / "support/faq.md").read_bytes()))])
        assert upload.status_code == 202, upload.text
        job = wait_until(lambda: (b := http.get(upload.json()["status_url"]).json())["status"] != "queued"
                         and b["status"] != "running" and b, 300, "the ingest job")
        assert job["status"] == "succeeded"
        assert [d["doc_id"] for d in http.get("/v1/documents").json()["documents"]] == ["faq.md"]
        answer = http.post("/v1/query", json={"question": "Write a poem about autumn leaves."})
        assert answer.status_code == 200
        assert http.post("/v1/feedback", json={"request_id": answer.json()["request_id"], "rating": "up"}).status_code == 201
    assert not list(Path(settings.data_dir).glob("*.sqlite"))

    import psycopg

    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT status FROM api_jobs").fetchall() == [("succeeded",)]
        assert conn.execute("SELECT doc_id FROM documents").fetchall() == [("faq.md",)]
        assert conn.execute("SELECT COUNT(*) FROM feedback").fetchone() == (1,)
        tables = {r[0] for r in conn.execute("SELECT DISTINCT schema_name FROM attest_migrations")}
    assert {"api_records", "api_keys", "usage", "manifest", "review"} <= tables


def test_several_workers_need_a_qdrant_server_and_postgresql(tmp_path):
    from api.serve import run_server

    lines: list[str] = []
    assert run_server(make_settings(tmp_path / "d", api_auth_mode="open"), port=0, echo=lines.append, workers=2) == 2
    assert "ATTEST_QDRANT_URL" in lines[-1]
    settings = make_settings(tmp_path / "d", api_auth_mode="open", qdrant_url="http://127.0.0.1:1")
    assert run_server(settings, port=0, echo=lines.append, workers=2) == 2
    assert "ATTEST_DATABASE_URL=postgresql" in lines[-1]


def test_attest_serve_with_two_workers_shares_the_state_and_runs_a_job_once(postgres, tmp_path):
    """Two uvicorn processes on one socket (qdrant-client's in-process mode stands in for the Qdrant server:
    each worker has its own, so only the state is shared here): an upload's job is taken by one worker, and
    its status and document list are read from PostgreSQL by whichever worker answers."""
    import signal

    import httpx
    import psycopg

    from api.server_lock import find_running_server
    from tests.test_api_support import wait_until

    url = postgres.new_database()
    settings = make_settings(tmp_path / "data", database_url=url, qdrant_url=":memory:", api_auth_mode="open")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ATTEST_DATA_DIR": str(settings.data_dir),
           "ATTEST_DATABASE_URL": url, "ATTEST_QDRANT_URL": ":memory:", "ATTEST_API_AUTH_MODE": "open",
           "ATTEST_GROUNDING_ENABLED": "false", "ATTEST_LOG_JSON": "false"}
    process = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", "0", "--workers", "2"], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        server = wait_until(lambda: find_running_server(settings) or process.poll() is not None, 300,
                            "two workers to answer")
        assert server is not True, process.stdout.read()
        with httpx.Client(base_url=server.url, timeout=120) as http:
            upload = http.post("/v1/documents", files=[("files", ("faq.md", (DEMO / "support/faq.md").read_bytes()))])
            assert upload.status_code == 202, upload.text
            job = wait_until(lambda: (b := http.get(upload.json()["status_url"]).json())["status"]
                             in ("succeeded", "partial", "failed") and b, 300, "the job")
            assert job["status"] == "succeeded"
            listed = {tuple(d["doc_id"] for d in http.get("/v1/documents").json()["documents"]) for _ in range(6)}
            assert listed == {("faq.md",)}
        with psycopg.connect(url) as conn:
            (owner,) = conn.execute("SELECT owner FROM api_jobs").fetchone()
        assert owner and int(owner.split(":")[1]) != process.pid  # a worker process, not the supervisor
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    assert "2 workers" in output
    assert find_running_server(settings) is None


def test_a_backup_in_one_worker_waits_for_and_holds_back_the_index_writes_of_every_worker(postgres):
    """Two workers = two CollectionLocks on one PostgreSQL (each hold has its own connection, as in two
    processes): a backup's hold_all waits while another worker writes a collection, and a writer waits while a
    backup holds them all."""
    import threading

    from api.jobs import CollectionLocks

    url = postgres.new_database()
    writer, backup = CollectionLocks(url), CollectionLocks(url)
    with writer.hold("acme"):
        with pytest.raises(TimeoutError):
            with backup.hold_all(timeout=0.3):
                pass
        with writer.hold("globex"), CollectionLocks(url).hold("acme"):  # writers do not hold each other back
            pass
    with backup.hold_all(timeout=5):
        with pytest.raises(TimeoutError):
            with writer.hold("acme", timeout=0.3):
                pass
        waited = threading.Event()

        def write():
            with writer.hold("acme"):  # no timeout: it waits for the backup to end
                waited.set()

        thread = threading.Thread(target=write)
        thread.start()
        assert not waited.wait(0.5)
    thread.join(10)
    assert waited.is_set()
    # SQLite state (one process): the in-process locks alone, no database involved
    local = CollectionLocks(None)
    with local.hold("acme"), pytest.raises(TimeoutError):
        with local.hold_all(timeout=0.2):
            pass


def test_a_job_lost_by_a_worker_on_another_host_is_taken_once_its_lease_runs_out(state_url, tmp_path, encoder,
                                                                                  monkeypatch):
    import api.jobs as jobs_module
    from api.jobs import CollectionLocks, JobRunner
    from api.records import Records
    from retrieval.store import EdgeStore
    from tests.test_api_support import wait_until

    monkeypatch.setattr(jobs_module, "JOB_SWEEP_S", 0.2)
    settings = make_settings(tmp_path / "data", database_url=state_url)
    records, store = Records(state_url), EdgeStore(settings.edge_dir)
    runner = JobRunner(settings, store, records, CollectionLocks(), encoder=encoder)
    target = runner.collection_dir("acme", "docs") / "faq.md"
    target.parent.mkdir(parents=True)
    target.write_bytes((DEMO / "support/faq.md").read_bytes())  # moved into place before the other worker died
    records.save_job({**_job("job_lost"), "files": [{"name": "faq.md", "status": "pending"}]})
    assert records.claim_job("job_lost", "elsewhere:4242:dead", lease_s=600)
    runner.start()
    try:
        assert records.job("job_lost")["status"] == "running"  # its lease runs: not taken
        records._db.execute("UPDATE api_jobs SET lease_until = ? WHERE id = ?",
                            ((datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat(), "job_lost"))
        job = wait_until(lambda: records.job("job_lost")["status"] == "succeeded" and records.job("job_lost"), 300,
                         "an idle worker to take the job")
        assert job["files"][0]["status"] == "ingested" and store.count("docs") > 0
    finally:
        runner.stop()
        store.close()
        records.close()


def test_the_review_store_queues_once_and_leases_a_slot_to_one_reviewer(state_url):
    from review.store import Conflict, ReviewStore

    store = ReviewStore(state_url)
    item, created = store.add_item(kind="failed_check", request_id="req_1", tenant="acme", api_key_id="key_a",
                                   collection="docs", risk="high", question="Q?", payload={"draft": {"answer": "A."}})
    again, created_again = store.add_item(kind="failed_check", request_id="req_1", tenant="acme", api_key_id="key_a",
                                          collection="docs", risk="high", question="Q?", payload={})
    assert created and not created_again and again["id"] == item["id"]  # the unique request id decides
    lease = store.claim(item["id"], "ann", lease_s=600)
    with pytest.raises(Conflict):
        store.claim(item["id"], "bob", lease_s=600)
    assert store.claim(item["id"], "ann", lease_s=600)["slot"] == lease["slot"]  # renewed
    decided = store.decide(item["id"], "ann", "approved")
    assert decided["status"] == "approved"
    with pytest.raises(Conflict):
        store.claim(item["id"], "bob", lease_s=600)
    assert [a["action"] for a in store.audit(item["id"])][:2] == ["queued", "claimed"]
    store.close()

"""What the API keeps beside the vectors (SQLite, ``<data_dir>/attest.sqlite``): answered questions, feedback,
the verdicts of cached answers, and ingest jobs.

Every answered question is kept with its response (answer, sources, verdicts), so feedback on a request id
is stored with the question and the answer it is about: a correction becomes a before/after pair.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path

from attest_sqlite import open_database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_queries (
    request_id  TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    api_key_id  TEXT NOT NULL,
    collection  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    question    TEXT NOT NULL,
    decision    TEXT NOT NULL,
    response    TEXT NOT NULL             -- the QueryResponse as JSON
);
CREATE TABLE IF NOT EXISTS feedback (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id  TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    api_key_id  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    rating      TEXT NOT NULL,            -- up | down
    correction  TEXT,                     -- what the answer should have said (the "after")
    comment     TEXT,
    question    TEXT NOT NULL,
    answer      TEXT NOT NULL,            -- what was served (the "before")
    decision    TEXT NOT NULL,
    sources     TEXT NOT NULL,            -- JSON: citations and retrieved sources
    verdicts    TEXT NOT NULL             -- JSON: per-claim verdicts
);
CREATE INDEX IF NOT EXISTS feedback_request ON feedback (request_id);
CREATE TABLE IF NOT EXISTS api_cache_verdicts (
    entry_id    TEXT PRIMARY KEY,         -- the semantic cache entry
    verdicts    TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_jobs (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    collection  TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    started_at  TEXT,
    finished_at TEXT,
    files       TEXT NOT NULL,            -- JSON list of api.schemas.JobFile
    summary     TEXT NOT NULL,
    error       TEXT
);
"""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Records:
    def __init__(self, path: Path):
        self._db = open_database(path, _SCHEMA)
        self._lock = threading.Lock()

    def _exec(self, sql: str, args=()):
        with self._lock:
            return self._db.execute(sql, args)

    def _one(self, sql: str, args=()):
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def _all(self, sql: str, args=()):
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ---- questions and feedback ------------------------------------------------------------------------
    def record_query(self, response, tenant: str, api_key_id: str, collection: str) -> None:
        self._exec("INSERT OR REPLACE INTO api_queries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (response.request_id, tenant, api_key_id, collection, utc_now(), response.question,
                    response.decision, response.model_dump_json()))

    def query(self, request_id: str, tenant: str) -> dict | None:
        row = self._one("SELECT response FROM api_queries WHERE request_id = ? AND tenant = ?", (request_id, tenant))
        return json.loads(row[0]) if row else None

    def query_collection(self, request_id: str, tenant: str) -> str | None:
        row = self._one("SELECT collection FROM api_queries WHERE request_id = ? AND tenant = ?", (request_id, tenant))
        return row[0] if row else None

    def add_feedback(self, request_id: str, tenant: str, api_key_id: str, rating: str, correction: str | None,
                     comment: str | None, response: dict) -> int:
        sources = {"citations": response.get("citations", []),
                   "sources": [{k: s.get(k) for k in ("chunk_id", "doc_id", "source", "page", "score")}
                               for s in response.get("sources", [])]}
        cursor = self._exec(
            "INSERT INTO feedback (request_id, tenant, api_key_id, created_at, rating, correction, comment, question, "
            "answer, decision, sources, verdicts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (request_id, tenant, api_key_id, utc_now(), rating, correction, comment, response.get("question", ""),
             response.get("answer", ""), response.get("decision", ""), json.dumps(sources),
             json.dumps(response.get("claims", []))))
        return int(cursor.lastrowid)

    def feedback_for(self, request_id: str) -> list[dict]:
        with self._lock:
            cursor = self._db.execute("SELECT * FROM feedback WHERE request_id = ? ORDER BY id", (request_id,))
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    # ---- verdicts of cached answers --------------------------------------------------------------------
    def store_cached_verdicts(self, entry_id: str, verdicts: dict) -> None:
        self._exec("INSERT OR REPLACE INTO api_cache_verdicts VALUES (?, ?, ?)",
                   (entry_id, json.dumps(verdicts), utc_now()))

    def cached_verdicts(self, entry_id: str) -> dict | None:
        row = self._one("SELECT verdicts FROM api_cache_verdicts WHERE entry_id = ?", (entry_id,))
        return json.loads(row[0]) if row else None

    # ---- jobs ------------------------------------------------------------------------------------------
    def save_job(self, job: dict) -> None:
        self._exec("INSERT OR REPLACE INTO api_jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (job["id"], job["tenant"], job["collection"], job["status"], job["created_at"],
                    job.get("started_at"), job.get("finished_at"), json.dumps(job["files"]),
                    json.dumps(job.get("summary") or {}), job.get("error")))

    def job(self, job_id: str) -> dict | None:
        row = self._one("SELECT * FROM api_jobs WHERE id = ?", (job_id,))
        return _job(row) if row else None

    def unfinished_jobs(self) -> list[dict]:
        return [_job(r) for r in self._all("SELECT * FROM api_jobs WHERE status IN ('queued', 'running') "
                                           "ORDER BY created_at")]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _job(row) -> dict:
    id_, tenant, collection, status, created, started, finished, files, summary, error = row
    return {"id": id_, "tenant": tenant, "collection": collection, "status": status, "created_at": created,
            "started_at": started, "finished_at": finished, "files": json.loads(files),
            "summary": json.loads(summary), "error": error}

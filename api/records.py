"""What the API keeps beside the vectors (the state database, ``attest_db``: SQLite or PostgreSQL): answered
questions, feedback, the verdicts of cached answers, and ingest jobs.

Every answered question is kept with its response (answer, sources, verdicts), so feedback on a request id
is stored with the question and the answer it is about: a correction becomes a before/after pair.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from attest_db import Migration, Schema, open_db

_SCHEMA = Schema("api_records", [Migration(1, "queries, feedback, cached verdicts, jobs", """
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
    id          {id},
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
"""), Migration(2, "jobs: which worker holds a running job, until when", """
ALTER TABLE api_jobs ADD COLUMN owner TEXT;
ALTER TABLE api_jobs ADD COLUMN lease_until TEXT
""")])


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Records:
    def __init__(self, url: str | Path):
        """``url``: ``settings.state_url`` (or a SQLite file path)."""
        self._db = open_db(url, _SCHEMA)

    def _exec(self, sql: str, args=()) -> int:
        return self._db.execute(sql, args)

    def _one(self, sql: str, args=()):
        return self._db.one(sql, args)

    def _all(self, sql: str, args=()):
        return self._db.all(sql, args)

    # ---- questions and feedback ------------------------------------------------------------------------
    def record_query(self, response, tenant: str, api_key_id: str, collection: str) -> None:
        self._exec("INSERT INTO api_queries VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id) DO UPDATE SET "
                   "tenant = excluded.tenant, api_key_id = excluded.api_key_id, collection = excluded.collection, "
                   "created_at = excluded.created_at, question = excluded.question, decision = excluded.decision, "
                   "response = excluded.response",
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
        row = self._one(
            "INSERT INTO feedback (request_id, tenant, api_key_id, created_at, rating, correction, comment, question, "
            "answer, decision, sources, verdicts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (request_id, tenant, api_key_id, utc_now(), rating, correction, comment, response.get("question", ""),
             response.get("answer", ""), response.get("decision", ""), json.dumps(sources),
             json.dumps(response.get("claims", []))))
        return int(row[0])

    def feedback_for(self, request_id: str) -> list[dict]:
        return self._db.dicts("SELECT * FROM feedback WHERE request_id = ? ORDER BY id", (request_id,))

    # ---- verdicts of cached answers --------------------------------------------------------------------
    def store_cached_verdicts(self, entry_id: str, verdicts: dict) -> None:
        self._exec("INSERT INTO api_cache_verdicts VALUES (?, ?, ?) ON CONFLICT (entry_id) DO UPDATE SET "
                   "verdicts = excluded.verdicts, created_at = excluded.created_at",
                   (entry_id, json.dumps(verdicts), utc_now()))

    def cached_verdicts(self, entry_id: str) -> dict | None:
        row = self._one("SELECT verdicts FROM api_cache_verdicts WHERE entry_id = ?", (entry_id,))
        return json.loads(row[0]) if row else None

    # ---- jobs ------------------------------------------------------------------------------------------
    def save_job(self, job: dict) -> None:
        self._exec("INSERT INTO api_jobs (id, tenant, collection, status, created_at, started_at, finished_at, files, "
                   "summary, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                   "status = excluded.status, started_at = excluded.started_at, finished_at = excluded.finished_at, "
                   "files = excluded.files, summary = excluded.summary, error = excluded.error",
                   (job["id"], job["tenant"], job["collection"], job["status"], job["created_at"],
                    job.get("started_at"), job.get("finished_at"), json.dumps(job["files"]),
                    json.dumps(job.get("summary") or {}), job.get("error")))

    def claim_job(self, job_id: str, owner: str, lease_s: float, now: datetime | None = None) -> bool:
        """Take a job for ``owner`` (one worker): a queued one, or a running one whose holder's lease ran
        out. One statement, so of several workers asking at once exactly one gets it."""
        now = now or datetime.now(timezone.utc)
        until = (now + timedelta(seconds=lease_s)).isoformat(timespec="seconds")
        return self._exec(
            "UPDATE api_jobs SET owner = ?, lease_until = ?, status = 'running', started_at = COALESCE(started_at, ?) "
            "WHERE id = ? AND (status = 'queued' OR (status = 'running' AND (lease_until IS NULL OR lease_until < ? "
            "OR owner = ?)))",
            (owner, until, now.isoformat(timespec="seconds"), job_id, now.isoformat(timespec="seconds"), owner)) == 1

    def renew_job(self, job_id: str, owner: str, lease_s: float) -> bool:
        """Extend ``owner``'s lease on a running job; False if another worker has taken it meanwhile."""
        until = (datetime.now(timezone.utc) + timedelta(seconds=lease_s)).isoformat(timespec="seconds")
        return self._exec("UPDATE api_jobs SET lease_until = ? WHERE id = ? AND owner = ? AND status = 'running'",
                          (until, job_id, owner)) == 1

    def release_job(self, job_id: str, owner: str) -> bool:
        """Put back a running job whose holder is known dead (a worker of this host that was killed)."""
        return self._exec("UPDATE api_jobs SET status = 'queued', owner = NULL, lease_until = NULL "
                          "WHERE id = ? AND owner = ? AND status = 'running'", (job_id, owner)) == 1

    def job(self, job_id: str) -> dict | None:
        row = self._one(f"SELECT {_JOB_COLUMNS} FROM api_jobs WHERE id = ?", (job_id,))
        return _job(row) if row else None

    def unfinished_jobs(self) -> list[dict]:
        return [_job(r) for r in self._all(f"SELECT {_JOB_COLUMNS} FROM api_jobs WHERE status IN ('queued', 'running') "
                                           "ORDER BY created_at")]

    def running_job_owners(self) -> dict[str, str | None]:
        """Running jobs and the worker holding each."""
        return dict(self._all("SELECT id, owner FROM api_jobs WHERE status = 'running'"))

    def close(self) -> None:
        self._db.close()


_JOB_COLUMNS = "id, tenant, collection, status, created_at, started_at, finished_at, files, summary, error"


def _job(row) -> dict:
    id_, tenant, collection, status, created, started, finished, files, summary, error = row
    return {"id": id_, "tenant": tenant, "collection": collection, "status": status, "created_at": created,
            "started_at": started, "finished_at": finished, "files": json.loads(files),
            "summary": json.loads(summary), "error": error}

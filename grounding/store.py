"""Every claim verdict, stored: table ``grounding_verdicts`` of the state database (``attest_db``)."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path

from attest_db import Migration, Schema, open_db

SCHEMA = Schema("grounding_verdicts", [Migration(1, "claim verdicts", """
CREATE TABLE IF NOT EXISTS grounding_verdicts (
    id {id},
    created_at TEXT NOT NULL,
    request_id TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    claim TEXT NOT NULL,
    sentence INTEGER NOT NULL,
    evidence_ids TEXT NOT NULL,
    cited_ids TEXT NOT NULL,
    signals TEXT NOT NULL,
    score {float} NOT NULL,
    threshold {float} NOT NULL,
    risk TEXT NOT NULL,
    supported INTEGER NOT NULL,
    citation TEXT NOT NULL,
    decision TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_version TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS grounding_verdicts_request ON grounding_verdicts (request_id);
""")])


class VerdictStore:
    def __init__(self, url: str | Path):
        self._conn = open_db(url, SCHEMA)  # settings.state_url (or a SQLite file path)
        self._lock = threading.Lock()

    def record(self, request_id: str, verdicts, decision: str, risk: str, model: str, prompt_version: str,
               attempt: int = 0) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        rows = [(now, request_id, attempt, v.claim, v.sentence, json.dumps(v.evidence_ids), json.dumps(v.cited_ids),
                 json.dumps(v.signals, sort_keys=True), v.score, v.threshold, risk, int(v.supported), v.citation,
                 decision, model, prompt_version) for v in verdicts]
        # One transaction (the connection autocommits otherwise): an answer's verdicts are stored all or none.
        with self._lock, self._conn.transaction():
            self._conn.executemany(
                "INSERT INTO grounding_verdicts (created_at, request_id, attempt, claim, sentence, evidence_ids, "
                "cited_ids, signals, score, threshold, risk, supported, citation, decision, model, prompt_version) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def for_request(self, request_id: str) -> list[dict]:
        with self._lock:
            return self._conn.dicts("SELECT * FROM grounding_verdicts WHERE request_id = ? ORDER BY id", (request_id,))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

"""The one way attest opens its SQLite database (``<data_dir>/attest.sqlite``), shared by every stage
that keeps records there (usage ledger, API records, API keys, grounding verdicts).

The API server writes from several threads while a CLI command may read or write from another process:
WAL lets readers and one writer work at once, and a busy timeout makes a writer wait for the lock instead
of failing with "database is locked". Statements autocommit (``isolation_level=None``); callers that need a
transaction open one with ``BEGIN``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_database(path: Path, schema: str = "") -> sqlite3.Connection:
    """Open (creating its folder) the database at ``path`` and apply ``schema`` (idempotent DDL)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA busy_timeout=5000")
    if schema:
        db.executescript(schema)
    return db

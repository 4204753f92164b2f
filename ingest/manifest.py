"""The ingest manifest (SQLite): which documents are in which collection, their file hash and chunk ids."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    collection  TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    source      TEXT NOT NULL,
    root        TEXT NOT NULL,
    file_hash   TEXT NOT NULL,
    tags        TEXT NOT NULL,
    title       TEXT NOT NULL,
    chunk_ids   TEXT NOT NULL,
    ingested_at TEXT NOT NULL,
    PRIMARY KEY (collection, doc_id)
);
"""


@dataclass
class ManifestEntry:
    collection: str
    doc_id: str
    source: str
    root: str
    file_hash: str
    tags: list[str]
    title: str
    chunk_ids: list[str]
    ingested_at: str


class Manifest:
    def __init__(self, path: Path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)

    def _entry(self, row) -> ManifestEntry:
        c, d, s, r, h, tags, title, ids, at = row
        return ManifestEntry(c, d, s, r, h, json.loads(tags), title, json.loads(ids), at)

    def get(self, collection: str, doc_id: str) -> ManifestEntry | None:
        row = self.db.execute(
            "SELECT * FROM documents WHERE collection = ? AND doc_id = ?", (collection, doc_id)
        ).fetchone()
        return self._entry(row) if row else None

    def entries(self, collection: str) -> list[ManifestEntry]:
        rows = self.db.execute("SELECT * FROM documents WHERE collection = ? ORDER BY doc_id", (collection,))
        return [self._entry(r) for r in rows]

    def put(self, entry: ManifestEntry) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (entry.collection, entry.doc_id, entry.source, entry.root, entry.file_hash,
                 json.dumps(sorted(entry.tags)), entry.title, json.dumps(entry.chunk_ids), entry.ingested_at),
            )

    def delete(self, collection: str, doc_id: str) -> None:
        with self.db:
            self.db.execute("DELETE FROM documents WHERE collection = ? AND doc_id = ?", (collection, doc_id))

    def close(self) -> None:
        self.db.close()

"""The ingest manifest: which documents are in which collection, their file hash and chunk ids (its own
SQLite file by default, or the shared PostgreSQL database: ``settings.manifest_url``, through ``attest_db``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from attest_db import Migration, Schema, open_db

_SCHEMA = Schema("manifest", [Migration(1, "documents", """
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
""")])
_COLUMNS = "collection, doc_id, source, root, file_hash, tags, title, chunk_ids, ingested_at"


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
    def __init__(self, url: str | Path):
        """``url``: ``settings.manifest_url`` (or a SQLite file path)."""
        self.db = open_db(url, _SCHEMA)

    def _entry(self, row) -> ManifestEntry:
        c, d, s, r, h, tags, title, ids, at = row
        return ManifestEntry(c, d, s, r, h, json.loads(tags), title, json.loads(ids), at)

    def get(self, collection: str, doc_id: str) -> ManifestEntry | None:
        row = self.db.one(f"SELECT {_COLUMNS} FROM documents WHERE collection = ? AND doc_id = ?",
                          (collection, doc_id))
        return self._entry(row) if row else None

    def entries(self, collection: str) -> list[ManifestEntry]:
        rows = self.db.all(f"SELECT {_COLUMNS} FROM documents WHERE collection = ? ORDER BY doc_id", (collection,))
        return [self._entry(r) for r in rows]

    def put(self, entry: ManifestEntry) -> None:
        self.db.execute(
            f"INSERT INTO documents ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (collection, doc_id) DO UPDATE SET source = excluded.source, root = excluded.root, "
            "file_hash = excluded.file_hash, tags = excluded.tags, title = excluded.title, "
            "chunk_ids = excluded.chunk_ids, ingested_at = excluded.ingested_at",
            (entry.collection, entry.doc_id, entry.source, entry.root, entry.file_hash,
             json.dumps(sorted(entry.tags)), entry.title, json.dumps(entry.chunk_ids), entry.ingested_at))

    def delete(self, collection: str, doc_id: str) -> None:
        self.db.execute("DELETE FROM documents WHERE collection = ? AND doc_id = ?", (collection, doc_id))

    def close(self) -> None:
        self.db.close()

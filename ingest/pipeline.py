"""The ingest run: discover -> hash -> read -> chunk -> embed (dense + BM25) -> write -> manifest.

Idempotent and safe to interrupt. A document's new chunks are written first, then every other point of
that document is deleted, then the manifest records it; a run killed anywhere in between leaves the
manifest pointing at the old state, so the next run redoes that document and ends with exactly the
point set of a clean run. Chunks already stored (same document, same text -> same UUID5 id) are never
embedded again.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from ingest.chunker import Chunk, Chunker
from ingest.manifest import Manifest, ManifestEntry
from ingest.reader import ReadDocument, ReadError, check_file_size, discover, read_file
from retrieval.bm25 import Bm25Encoder, tokenize
from retrieval.schema import ChunkPoint, check_collection_name

class Progress(Protocol):
    def start(self, files: int) -> None: ...
    def file_done(self, path: str) -> None: ...
    def chunks_done(self, n: int) -> None: ...


class _NoProgress:
    def start(self, files: int) -> None: ...
    def file_done(self, path: str) -> None: ...
    def chunks_done(self, n: int) -> None: ...


@dataclass
class IngestReport:
    collection: str
    dry_run: bool = False
    files_seen: int = 0
    files_ingested: int = 0
    files_unchanged: int = 0
    files_failed: int = 0
    files_skipped_hidden: int = 0
    files_skipped_unsupported: int = 0
    failures: list[dict] = field(default_factory=list)
    chunks_written: int = 0
    chunks_deleted: int = 0
    chunks_embedded: int = 0
    tokens_embedded: int = 0
    documents_pruned: int = 0
    seconds: float = 0.0

    @property
    def nothing_readable(self) -> bool:
        return self.files_ingested + self.files_unchanged == 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Pending:
    doc_id: str
    source: Path
    root: Path
    file_hash: str
    tags: list[str]
    document: ReadDocument
    chunks: list[Chunk]
    old: ManifestEntry | None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def doc_id_for(root: Path, path: Path) -> str:
    """A document's id: its path relative to the folder it was ingested from, with '/' separators."""
    return path.relative_to(root).as_posix()


class Ingester:
    def __init__(self, settings, store, manifest: Manifest, encoder=None):
        from retrieval.dense import get_dense_encoder

        self.settings = settings
        self.store = store
        self.manifest = manifest
        self.encoder = encoder or get_dense_encoder()
        self.bm25 = Bm25Encoder(settings.bm25_k1, settings.bm25_b, settings.bm25_avg_len)
        self.chunker = Chunker(self.encoder.tokenizer, settings.chunk_tokens, settings.chunk_overlap)

    def run(self, paths: list[Path], collection: str | None = None, tags: list[str] | None = None,
            prune: bool = False, dry_run: bool = False, progress: Progress | None = None) -> IngestReport:
        collection = check_collection_name(collection or self.settings.collection)
        tags = sorted(set(tags or []))
        progress = progress or _NoProgress()
        started = time.perf_counter()
        report = IngestReport(collection=collection, dry_run=dry_run)
        found = discover([Path(p) for p in paths])
        report.files_skipped_hidden = found.skipped_hidden
        report.files_skipped_unsupported = found.skipped_unsupported
        for missing in found.missing:
            report.failures.append({"path": missing, "reason": "path does not exist"})
            report.files_failed += 1
        report.files_seen = len(found.files)
        progress.start(len(found.files))
        if not dry_run:
            self.store.ensure_collection(collection)

        max_bytes = int(self.settings.max_file_mb * 1e6)
        group: list[_Pending] = []
        seen_doc_ids: set[str] = set()
        for root, path in found.files:
            doc_id = doc_id_for(root, path)
            seen_doc_ids.add(doc_id)
            try:
                file_hash = self._hash(path, max_bytes)
            except ReadError as exc:
                report.files_failed += 1
                report.failures.append({"path": str(path), "reason": str(exc)})
                progress.file_done(str(path))
                continue
            old = self.manifest.get(collection, doc_id)
            if old and old.file_hash == file_hash:
                if old.tags != tags and not dry_run:
                    self.store.set_payload(collection, old.chunk_ids, {"tags": tags})
                    self.store.flush(collection)
                    self.manifest.put(ManifestEntry(**{**asdict(old), "tags": tags}))
                report.files_unchanged += 1
                progress.file_done(str(path))
                continue
            try:  # only a new or changed file is parsed
                document = read_file(path, max_bytes)
            except ReadError as exc:
                report.files_failed += 1
                report.failures.append({"path": str(path), "reason": str(exc)})
                progress.file_done(str(path))
                continue
            chunks = self.chunker.chunk(doc_id, document)
            group.append(_Pending(doc_id, path, root, file_hash, tags, document, chunks, old))
            if sum(len(p.chunks) for p in group) >= self.settings.ingest_group_chunks:
                self._write_group(collection, group, report, dry_run, progress)
                group = []
        self._write_group(collection, group, report, dry_run, progress)

        if prune:
            roots = {str(root) for root, _ in found.files} | {str(Path(p).resolve()) for p in paths if Path(p).is_dir()}
            for entry in self.manifest.entries(collection):
                if entry.root in roots and entry.doc_id not in seen_doc_ids and not Path(entry.source).exists():
                    report.documents_pruned += 1
                    report.chunks_deleted += len(entry.chunk_ids)
                    if not dry_run:
                        self.store.delete_doc_except(collection, entry.doc_id, [])
                        self.store.flush(collection)
                        self.manifest.delete(collection, entry.doc_id)
        report.seconds = round(time.perf_counter() - started, 3)
        return report

    def run_records(self, records, collection: str, root: str, progress: Progress | None = None) -> IngestReport:
        """Ingest in-memory documents, ``(doc_id, title, text)`` triples (a benchmark corpus, an upload).

        Same chunking, ids, idempotence and manifest as files; ``root`` names where they came from.
        """
        from ingest.reader import Section

        collection = check_collection_name(collection)
        progress = progress or _NoProgress()
        started = time.perf_counter()
        report = IngestReport(collection=collection)
        self.store.ensure_collection(collection)
        group: list[_Pending] = []
        for doc_id, title, text in records:
            report.files_seen += 1
            body = f"{title}\n\n{text}".strip() if title else text.strip()
            if not body:
                report.files_failed += 1
                report.failures.append({"path": doc_id, "reason": "empty document"})
                continue
            digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
            old = self.manifest.get(collection, doc_id)
            if old and old.file_hash == digest:
                report.files_unchanged += 1
                progress.file_done(doc_id)
                continue
            document = ReadDocument(path=Path(doc_id), title=title or doc_id, sections=[Section(text=body)])
            chunks = self.chunker.chunk(doc_id, document)
            group.append(_Pending(doc_id, Path(root) / doc_id, Path(root), digest, [], document, chunks, old))
            if sum(len(p.chunks) for p in group) >= self.settings.ingest_group_chunks:
                self._write_group(collection, group, report, False, progress)
                group = []
        self._write_group(collection, group, report, False, progress)
        report.seconds = round(time.perf_counter() - started, 3)
        return report

    @staticmethod
    def _hash(path: Path, max_bytes: int) -> str:
        """The file's sha256, after the same size checks as reading it (an unchanged file is never parsed)."""
        check_file_size(path, max_bytes)
        try:
            return file_sha256(path)
        except OSError as exc:
            raise ReadError(f"cannot read: {exc.strerror}") from None

    def _write_group(self, collection: str, group: list[_Pending], report: IngestReport, dry_run: bool,
               progress: Progress) -> None:
        if not group:
            return
        # Embed only chunks the store does not already hold for that document.
        todo: list[Chunk] = []
        for pending in group:
            kept = set(pending.old.chunk_ids) if pending.old else set()
            todo.extend(c for c in pending.chunks if c.point_id not in kept)
        vectors = {}
        if todo and not dry_run:
            dense = self.encoder.encode([c.text for c in todo], batch_size=self.settings.embed_batch_size,
                                        threads=self.settings.ingest_threads)
            vectors = {c.point_id: v for c, v in zip(todo, dense)}
        report.chunks_embedded += len(todo)
        report.tokens_embedded += sum(c.tokens for c in todo)

        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for pending in group:
            new_ids = [c.point_id for c in pending.chunks]
            old_ids = pending.old.chunk_ids if pending.old else []
            old_index = {cid: i for i, cid in enumerate(old_ids)}
            fresh = [c for c in pending.chunks if c.point_id not in old_index]
            moved = [c for c in pending.chunks if c.point_id in old_index and old_index[c.point_id] != c.chunk_index]
            report.chunks_written += len(fresh)
            report.chunks_deleted += len(set(old_ids) - set(new_ids))
            if dry_run:
                continue
            points = [ChunkPoint(c.point_id, vectors[c.point_id], self.bm25.encode_tokens(tokenize(c.text)),
                                 self._payload(pending, c, now)) for c in fresh]
            for start in range(0, len(points), self.settings.write_batch_size):
                self.store.upsert(collection, points[start:start + self.settings.write_batch_size])
            for c in moved:
                self.store.set_payload(collection, [c.point_id], {"chunk_index": c.chunk_index})
            if pending.old and pending.old.tags != pending.tags:
                self.store.set_payload(collection, new_ids, {"tags": pending.tags})
            self.store.delete_doc_except(collection, pending.doc_id, new_ids)
        if not dry_run:
            # The manifest may only name what the store holds durably.
            self.store.flush(collection)
        for pending in group:
            if not dry_run:
                self.manifest.put(ManifestEntry(
                    collection, pending.doc_id, str(pending.source), str(pending.root), pending.file_hash,
                    pending.tags, pending.document.title, [c.point_id for c in pending.chunks], now))
            report.files_ingested += 1
            progress.chunks_done(len(pending.chunks))
            progress.file_done(str(pending.source))

    @staticmethod
    def _payload(pending: _Pending, chunk: Chunk, now: str) -> dict:
        return {
            "doc_id": pending.doc_id,
            "source": str(pending.source),
            "title": pending.document.title,
            "heading_path": chunk.heading_path,
            "page": chunk.page,
            "chunk_index": chunk.chunk_index,
            "text": chunk.text,
            "content_hash": chunk.content_hash,
            "ingested_at": now,
            "tags": pending.tags,
        }

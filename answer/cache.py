"""The semantic cache: question embedding -> a validated answer, in the same vector store as the chunks.

Entries live in a collection of their own beside the chunks (``answer-cache-<collection>``, dense vector
only) with the answer, its citations, when it was made, and a version of every cited document (a digest
of that document's chunk content hashes). An entry is served only when the question is similar enough
(cosine of MiniLM embeddings >= threshold), was asked with the same filters, and none of its cited
documents has changed since; a stale entry found on lookup is deleted. An answer a person approved or
corrected (api/review.py) is stored the same way, with ``reviewed`` (item id, action, time, risk) in it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from retrieval.bm25 import SparseVector
from retrieval.schema import DENSE, ChunkPoint

_CACHE_PREFIX = "answer-cache-"
_NAMESPACE = uuid.UUID("6f4f2b8e-9d0a-4c1e-8a53-2f0f5c3b7a11")
_CANDIDATES = 8


def cache_collection(collection: str) -> str:
    """The cache collection for a chunk collection (collection names are at most 64 characters)."""
    name = _CACHE_PREFIX + collection
    return name if len(name) <= 64 else _CACHE_PREFIX + hashlib.sha1(collection.encode()).hexdigest()[:20]


def scope_key(filters: dict | None) -> str:
    """Answers found under different filters are different answers."""
    clean = {k: sorted(v if isinstance(v, list) else [v]) for k, v in (filters or {}).items() if v}
    return json.dumps(clean, sort_keys=True)


@dataclass
class CacheHit:
    entry_id: str
    similarity: float
    question: str
    created_at: str
    answer: dict  # the cached fields of an AnswerResult (answer, sentences, provider, model, prompt, route)


class SemanticCache:
    def __init__(self, store, threshold: float):
        self.store = store
        self.threshold = threshold

    def document_version(self, collection: str, doc_id: str) -> str | None:
        """A digest of the document's current chunks; None when the document is gone."""
        hashes = sorted(str(hit.payload.get("content_hash", hit.id))
                        for hit in self.store.scroll(collection, {"doc_id": [doc_id]}))
        if not hashes:
            return None
        return hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:32]

    def lookup(self, collection: str, question_vector: list[float], filters: dict | None = None,
               threshold: float | None = None) -> CacheHit | None:
        """The most similar fresh entry at or above ``threshold`` (default: the configured one)."""
        threshold = self.threshold if threshold is None else threshold
        name = cache_collection(collection)
        if not self.store.has_collection(name):
            return None
        scope = scope_key(filters)
        stale = []
        try:
            for hit in self.store.search(name, DENSE, question_vector, _CANDIDATES):
                if hit.score < threshold:
                    break  # results come best first
                payload = hit.payload
                if payload.get("scope") != scope:
                    continue
                versions = payload.get("doc_versions") or {}
                if any(self.document_version(collection, doc) != version for doc, version in versions.items()):
                    stale.append(hit.id)
                    continue
                return CacheHit(hit.id, float(hit.score), payload.get("question", ""),
                                payload.get("created_at", ""), json.loads(payload["answer"]))
        finally:
            if stale:
                self.store.delete_ids(name, stale)
                self._flush(name)
        return None

    def remember(self, collection: str, question: str, question_vector: list[float], answer: dict,
                 cited_doc_ids: list[str], filters: dict | None = None) -> str | None:
        """Store a validated answer; returns the entry id (None when a cited document is already gone)."""
        versions = {}
        for doc in sorted(set(cited_doc_ids)):
            version = self.document_version(collection, doc)
            if version is None:
                return None
            versions[doc] = version
        scope = scope_key(filters)
        entry_id = self.entry_id(question, filters)
        payload = {
            "kind": "answer-cache",
            "question": question,
            "scope": scope,
            "doc_id": sorted(versions),
            "doc_versions": versions,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "answer": json.dumps(answer),
        }
        point = ChunkPoint(id=entry_id, dense=list(question_vector), sparse=SparseVector([], []), payload=payload)
        self.store.upsert(cache_collection(collection), [point])
        self._flush(cache_collection(collection))
        return entry_id

    def entry_id(self, question: str, filters: dict | None = None) -> str:
        """The id an answer to ``question`` under ``filters`` is stored under (one entry per question and scope)."""
        return str(uuid.uuid5(_NAMESPACE, f"{scope_key(filters)}\n{' '.join(question.lower().split())}"))

    def forget(self, collection: str, question: str, filters: dict | None = None) -> None:
        """Remove the entry for ``question`` (an answer a reviewer rejected must not be served again)."""
        name = cache_collection(collection)
        if self.store.has_collection(name):
            self.store.delete_ids(name, [self.entry_id(question, filters)])
            self._flush(name)

    def _flush(self, name: str) -> None:
        # The embedded store batches durability (flush per unit of work); one answer is one unit here.
        flush = getattr(self.store, "flush", None)
        if flush is not None:
            flush(name)

    def clear(self, collection: str) -> None:
        self.store.drop_collection(cache_collection(collection))

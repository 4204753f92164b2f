"""Second-stage rerankers, behind one interface: ``rerank(query, hits, context) -> hits``.

No cross-encoder ships in a PyPI package, so the second stage works with what the index already has.
``DensePrfReranker`` (pseudo-relevance feedback, Rocchio on embeddings): move the query vector towards
the mean of the top fused hits' vectors, search the dense channel again, and fuse the new dense list
with the original BM25 list. One extra vector lookup and one dense search: a few milliseconds.
Measured on BEIR SciFact (README): +0.005 nDCG@10 over all queries, but no gain on the half held out
from tuning, so it is not the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class RerankContext:
    store: object
    collection: str
    query_vector: list[float]
    bm25_hits: list  # the first stage's BM25 channel (StoredHit list)
    filters: dict | None
    depth: int
    dense_weight: float


class Reranker(Protocol):
    def rerank(self, query: str, hits: list, context: RerankContext) -> list: ...


class DensePrfReranker:
    def __init__(self, feedback_docs: int = 3, beta: float = 0.6):
        self.feedback_docs = feedback_docs
        self.beta = beta

    def rerank(self, query: str, hits: list, context: RerankContext) -> list:
        from retrieval.schema import DENSE
        from retrieval.search import Hit, weighted_fusion

        feedback = [h.id for h in hits[: self.feedback_docs]]
        vectors = context.store.dense_vectors(context.collection, feedback)
        if not vectors:
            return hits
        moved = np.asarray(context.query_vector) + self.beta * np.mean(list(vectors.values()), axis=0)
        moved /= np.linalg.norm(moved) or 1.0
        dense = context.store.search(context.collection, DENSE, moved.tolist(), context.depth, context.filters)
        fused = weighted_fusion(dense, context.bm25_hits, context.dense_weight)
        known = {h.id: h for h in hits}
        stored = {h.id: h for h in dense}
        stored.update({h.id: h for h in context.bm25_hits})
        out = []
        for point_id, score in fused:
            base = known.get(point_id) or Hit.from_stored(stored[point_id], score)
            out.append(Hit(**{**base.__dict__, "score": score, "channels": dict(base.channels)}))
        return out

"""Standard IR metrics through ranx: nDCG@10, recall@10, recall@100, MRR@10."""

from __future__ import annotations

HEADLINE = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


def ir_metrics(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]],
               metrics: tuple[str, ...] = HEADLINE) -> dict[str, float]:
    """Mean metrics over the queries of ``qrels``; a query with no retrieved document scores 0."""
    import warnings

    from ranx import Qrels, Run, evaluate

    # ranx's numba kernels warn about an internal uint64 -> int64 cast on every call.
    warnings.filterwarnings("ignore", message=".*unsafe cast.*")

    run = {qid: (run.get(qid) or {}) for qid in qrels}
    # ranx refuses empty result lists; a query that retrieved nothing gets one impossible id instead.
    run = {qid: docs if docs else {"__none__": 0.0} for qid, docs in run.items()}
    scores = evaluate(Qrels(qrels), Run(run), list(metrics))
    if isinstance(scores, float):
        scores = {metrics[0]: scores}
    return {k: float(v) for k, v in scores.items()}


def doc_run(hits, depth: int = 100) -> dict[str, float]:
    """Chunk hits -> a document ranking: a document scores its best chunk (MaxP)."""
    docs: dict[str, float] = {}
    for rank, hit in enumerate(hits):
        if hit.doc_id not in docs:
            # Rank-based score keeps the fused order and breaks no ties.
            docs[hit.doc_id] = 1.0 / (rank + 1)
        if len(docs) >= depth:
            break
    return docs

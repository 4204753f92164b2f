"""Retrieval evaluation: IR metrics (ranx) and ragas' non-LLM context metrics, on BEIR or a golden set."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from evaluation.beir import load_beir
from evaluation.ir import doc_run, ir_metrics

RAGAS_METRICS = ("id_context_precision", "id_context_recall", "context_precision_with_reference", "context_recall")


@dataclass
class RetrievalReport:
    dataset: str
    collection: str
    queries: int
    modes: dict[str, dict[str, float]] = field(default_factory=dict)
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return self.__dict__


def ragas_context_scores(samples: list[dict]) -> dict[str, float]:
    """Means of ragas' LLM-free context metrics over samples of
    {retrieved_ids, reference_ids, retrieved_contexts, reference_contexts}."""
    import os

    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
    from ragas.dataset_schema import SingleTurnSample
    from ragas.metrics import (
        IDBasedContextPrecision, IDBasedContextRecall, NonLLMContextPrecisionWithReference, NonLLMContextRecall,
    )

    metrics = dict(zip(RAGAS_METRICS, (IDBasedContextPrecision(), IDBasedContextRecall(),
                                       NonLLMContextPrecisionWithReference(), NonLLMContextRecall())))

    async def score_all():
        totals: dict[str, list[float]] = {name: [] for name in metrics}
        for s in samples:
            sample = SingleTurnSample(
                retrieved_context_ids=s["retrieved_ids"] or ["<none>"], reference_context_ids=s["reference_ids"],
                retrieved_contexts=s["retrieved_contexts"] or [""], reference_contexts=s["reference_contexts"])
            for name, metric in metrics.items():
                value = await metric.single_turn_ascore(sample)
                if value == value:  # NaN when a sample has nothing to score
                    totals[name].append(float(value))
        return {name: (sum(v) / len(v) if v else 0.0) for name, v in totals.items()}

    return asyncio.run(score_all())


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def ensure_beir_collection(ingester, folder: Path, collection: str, progress=None):
    """Ingest a BEIR corpus into its own collection; unchanged documents are skipped, so reuse is free."""
    dataset = load_beir(folder)
    records = ((doc_id, title, text) for doc_id, (title, text) in dataset.corpus.items())
    report = ingester.run_records(records, collection, f"beir/{dataset.name}", progress=progress)
    return dataset, report


def evaluate_beir(retriever, dataset, collection: str, modes: list[str], k: int = 10, depth: int = 100,
                  query_ids: list[str] | None = None, on_query=None) -> RetrievalReport:
    qids = query_ids or sorted(dataset.queries)
    report = RetrievalReport(f"beir/{dataset.name.removeprefix('beir-')}", collection, len(qids))
    for mode in modes:
        run, samples, latencies = {}, [], []
        for qid in qids:
            started = time.perf_counter()
            result = retriever.search(dataset.queries[qid], collection, top_k=depth * 2, mode=mode)
            latencies.append((time.perf_counter() - started) * 1000)
            run[qid] = doc_run(result.hits, depth)
            top = list(run[qid])[:k]
            relevant = dataset.qrels[qid]
            samples.append({
                "retrieved_ids": top, "reference_ids": list(relevant),
                "retrieved_contexts": [" ".join(dataset.corpus[d]) for d in top if d in dataset.corpus],
                "reference_contexts": [" ".join(dataset.corpus[d]) for d in relevant if d in dataset.corpus],
            })
            if on_query:
                on_query()
        scores = ir_metrics({q: dataset.qrels[q] for q in qids}, run)
        scores.update(ragas_context_scores(samples))
        report.modes[mode] = scores
        report.latency_ms[mode] = {"p50": statistics.median(latencies), "p95": _percentile(latencies, 0.95)}
    return report


def load_golden(path: Path) -> list[dict]:
    cases = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    cases.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
    return cases


def _squash(text: str) -> str:
    return " ".join(text.split())


def _chunks_holding_passages(store, collection: str, cases: list[dict]) -> dict[str, list[str]]:
    """Per case, the stored chunk texts that contain one of its reference passages (the passage itself
    when no chunk holds it whole): ragas' string metrics then compare like with like."""
    chunks = [(h.payload.get("doc_id"), h.payload.get("text", "")) for h in store.scroll(collection)]
    squashed = [(doc, text, _squash(text)) for doc, text in chunks]
    out = {}
    for case in cases:
        refs = []
        for passage in case.get("passages") or []:
            needle = _squash(passage)
            found = [text for doc, text, flat in squashed if doc in case["doc_ids"] and needle in flat]
            refs.extend(found or [passage])
        out[case["id"]] = list(dict.fromkeys(refs))
    return out


def evaluate_golden(retriever, cases: list[dict], collection: str, modes: list[str], k: int = 10,
                    on_query=None) -> RetrievalReport:
    """Document-level IR metrics and ragas context metrics on the answerable golden questions."""
    answerable = [c for c in cases if c.get("answerable", True) and c.get("doc_ids")]
    report = RetrievalReport("golden", collection, len(answerable))
    reference_chunks = _chunks_holding_passages(retriever.store, collection, answerable)
    qrels = {c["id"]: {d: 1 for d in c["doc_ids"]} for c in answerable}
    for mode in modes:
        run, samples, latencies = {}, [], []
        for case in answerable:
            started = time.perf_counter()
            result = retriever.search(case["question"], collection, top_k=50, mode=mode)
            latencies.append((time.perf_counter() - started) * 1000)
            run[case["id"]] = doc_run(result.hits, 100)
            hits = result.hits[:k]
            samples.append({
                "retrieved_ids": list(dict.fromkeys(h.doc_id for h in hits)), "reference_ids": case["doc_ids"],
                "retrieved_contexts": [h.text for h in hits], "reference_contexts": reference_chunks[case["id"]],
            })
            if on_query:
                on_query()
        scores = ir_metrics(qrels, run)
        scores.update(ragas_context_scores(samples))
        report.modes[mode] = scores
        report.latency_ms[mode] = {"p50": statistics.median(latencies), "p95": _percentile(latencies, 0.95)}
    return report

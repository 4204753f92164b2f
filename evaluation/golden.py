"""Golden-set runs of the whole pipeline (retrieve -> answer -> verify), scored on criteria, with a
regression gate against a committed baseline and a history of runs in SQLite.

The pipeline is passed in as ``ask(question) -> dict`` with keys: answer, decision, citations
[{doc_id, chunk_id, quote}], claims [{text, supported, score}], contexts [retrieved passage texts],
latency_ms, cost_usd, model, prompt. ``ragas(question, answer, contexts) -> float | None`` (optional,
evaluation/ragas_faithfulness.py) adds ragas Faithfulness beside the verifier's own faithfulness.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from attest_db import Migration, Schema, open_db
from evaluation.scoring import citation_scores, exact_match, is_decline, token_f1

# Headline scores: higher is better for all of them; the gate compares these.
# ragas_faithfulness is gated only when both runs measured it.
HEADLINE = ("answer_f1", "answer_semantic", "citation_precision", "citation_recall", "faithfulness",
            "refusal_accuracy", "ragas_faithfulness")
_CITATION_MARK = re.compile(r"\s*\[\d+\]")


@dataclass
class CaseResult:
    id: str
    kind: str
    answerable: bool
    question: str
    reference: str
    answer: str
    decision: str
    declined: bool
    refusal_correct: bool
    answer_f1: float | None
    answer_em: float | None
    answer_semantic: float | None
    citation_precision: float | None
    citation_recall: float | None
    faithfulness: float | None
    latency_ms: float
    cost_usd: float
    error: str = ""
    ragas_faithfulness: float | None = None

    def composite(self) -> float:
        """One number per case, to name the cases that got worse."""
        parts = [float(self.refusal_correct)]
        parts += [v for v in (self.answer_f1, self.citation_recall, self.faithfulness) if v is not None]
        return sum(parts) / len(parts)


@dataclass
class GoldenReport:
    run_id: str
    created_at: str
    golden: str
    git_commit: str
    models: list[str]
    prompts: list[str]
    scores: dict[str, float]
    latency_ms: dict[str, float]
    cost_usd: float
    decisions: dict[str, int]
    cases: list[CaseResult] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GoldenReport":
        cases = [CaseResult(**c) for c in data.get("cases", [])]
        return cls(**{**data, "cases": cases})


def git_commit(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _mean(values) -> float:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else 0.0


def score_case(case: dict, outcome: dict, similarity: Callable[[str, str], float] | None) -> CaseResult:
    answerable = bool(case.get("answerable", True))
    answer = outcome.get("answer") or ""
    decision = outcome.get("decision") or "unknown"
    declined = decision == "rejected" or is_decline(answer)
    claims = outcome.get("claims") or []
    faithfulness = _mean([1.0 if c.get("supported") else 0.0 for c in claims]) if claims else None
    if answerable and not declined:
        reference = case.get("reference_answer", "")
        f1, em = token_f1(answer, reference), exact_match(answer, reference)
        semantic = similarity(answer, reference) if similarity else None
        precision, recall = citation_scores(outcome.get("citations") or [], case.get("doc_ids") or [],
                                            case.get("passages") or [])
    elif answerable:  # declined an answerable question: nothing right, nothing cited
        f1 = em = 0.0
        semantic = 0.0 if similarity else None
        precision, recall = None, 0.0
    else:
        f1 = em = semantic = precision = recall = None
    return CaseResult(
        id=case["id"], kind=case.get("kind", ""), answerable=answerable, question=case["question"],
        reference=case.get("reference_answer", ""), answer=answer, decision=decision, declined=declined,
        refusal_correct=declined != answerable, answer_f1=f1, answer_em=em, answer_semantic=semantic,
        citation_precision=precision, citation_recall=recall, faithfulness=faithfulness,
        latency_ms=float(outcome.get("latency_ms") or 0.0), cost_usd=float(outcome.get("cost_usd") or 0.0),
        error=outcome.get("error", ""),
    )


def run_golden(cases: list[dict], ask: Callable[[str], dict], golden_name: str,
               similarity: Callable[[str, str], float] | None = None, on_case=None,
               ragas: Callable[[str, str, list[str]], float | None] | None = None) -> GoldenReport:
    results, models, prompts = [], set(), set()
    for case in cases:
        started = time.perf_counter()
        try:
            outcome = ask(case["question"])
        except Exception as exc:  # a crashed case is a failed case, not a crashed run
            outcome = {"answer": "", "decision": "error", "error": f"{type(exc).__name__}: {exc}"}
        outcome.setdefault("latency_ms", (time.perf_counter() - started) * 1000)
        if outcome.get("model"):
            models.add(outcome["model"])
        if outcome.get("prompt"):
            prompts.add(outcome["prompt"])
        result = score_case(case, outcome, similarity)
        if ragas is not None and outcome.get("claims") and not result.declined:
            # The served text without its [n] marks: ragas turns the answer into statements itself.
            result.ragas_faithfulness = ragas(case["question"], _CITATION_MARK.sub("", result.answer),
                                              list(outcome.get("contexts") or []))
        results.append(result)
        if on_case:
            on_case()
    latencies = [r.latency_ms for r in results] or [0.0]
    scores = {
        "answer_f1": _mean(r.answer_f1 for r in results),
        "answer_exact_match": _mean(r.answer_em for r in results),
        "answer_semantic": _mean(r.answer_semantic for r in results),
        "citation_precision": _mean(r.citation_precision for r in results),
        "citation_recall": _mean(r.citation_recall for r in results),
        "faithfulness": _mean(r.faithfulness for r in results),
        "refusal_accuracy": _mean(float(r.refusal_correct) for r in results),
    }
    if ragas is not None:
        scores["ragas_faithfulness"] = _mean(r.ragas_faithfulness for r in results)
    decisions: dict[str, int] = {}
    for r in results:
        decisions[r.decision] = decisions.get(r.decision, 0) + 1
    ordered = sorted(latencies)
    return GoldenReport(
        run_id=uuid.uuid4().hex[:12], created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        golden=golden_name, git_commit=git_commit(), models=sorted(models), prompts=sorted(prompts), scores=scores,
        latency_ms={"p50": statistics.median(ordered), "p95": ordered[min(len(ordered) - 1, int(0.95 * (len(ordered) - 1) + 0.5))]},
        cost_usd=sum(r.cost_usd for r in results), decisions=decisions, cases=results,
    )


@dataclass
class GateResult:
    passed: bool
    regressions: dict[str, tuple[float, float]]  # score -> (baseline, now)
    worse_cases: list[str]

    def describe(self) -> str:
        if self.passed:
            return "regression gate passed"
        lines = ["regression gate FAILED:"]
        for name, (before, now) in self.regressions.items():
            lines.append(f"  {name}: {before:.4f} -> {now:.4f} ({100 * (now - before) / before:+.1f}%)")
        if self.worse_cases:
            lines.append("  cases that got worse: " + ", ".join(self.worse_cases))
        return "\n".join(lines)


def regression_gate(current: GoldenReport, baseline: GoldenReport, max_drop: float = 0.02) -> GateResult:
    """Fail when a headline score drops by more than ``max_drop`` relative to the baseline."""
    regressions = {}
    for name in HEADLINE:
        before, now = baseline.scores.get(name), current.scores.get(name)
        if before is None or now is None or before <= 0:
            continue
        if (before - now) / before > max_drop:
            regressions[name] = (before, now)
    before_cases = {c.id: c for c in baseline.cases}
    worse = [c.id for c in current.cases if c.id in before_cases and c.composite() < before_cases[c.id].composite() - 1e-9]
    return GateResult(not regressions, regressions, worse if regressions else [])


def markdown_report(report: GoldenReport, gate: GateResult | None = None) -> str:
    lines = [f"# Golden run {report.run_id}", "",
             f"{report.golden}, commit {report.git_commit}, {len(report.cases)} cases, "
             f"models {', '.join(report.models) or '-'}, prompts {', '.join(report.prompts) or '-'}", "",
             "| score | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in report.scores.items()]
    lines += ["", f"latency p50 {report.latency_ms['p50']:.0f} ms, p95 {report.latency_ms['p95']:.0f} ms; "
                  f"cost ${report.cost_usd:.4f}; decisions {report.decisions}", ""]
    if gate is not None:
        lines += ["```", gate.describe(), "```", ""]
    lines += ["| case | kind | decision | F1 | cit. recall | faithful | ragas faithful | refusal ok |",
              "|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for c in report.cases:
        lines.append(f"| {c.id} | {c.kind} | {c.decision} | {fmt(c.answer_f1)} | {fmt(c.citation_recall)} | "
                     f"{fmt(c.faithfulness)} | {fmt(c.ragas_faithfulness)} | {'yes' if c.refusal_correct else 'NO'} |")
    return "\n".join(lines) + "\n"


_HISTORY = Schema("eval_runs", [
    Migration(1, "golden runs", """CREATE TABLE IF NOT EXISTS eval_runs (
        run_id TEXT PRIMARY KEY, created_at TEXT, golden TEXT, git_commit TEXT, prompts TEXT, models TEXT,
        scores TEXT, latency_p50_ms {float}, cost_usd {float})"""),
    Migration(2, "order of runs recorded in the same second", "ALTER TABLE eval_runs ADD COLUMN recorded_at TEXT"),
])


class RunHistory:
    """Golden runs in the state database (``attest_db``): run id, time, git commit, prompt versions, models,
    scores."""

    def __init__(self, url: str | Path):
        """``url``: ``settings.state_url`` (or a SQLite file path)."""
        self.db = open_db(url, _HISTORY)

    def record(self, report: GoldenReport) -> None:
        self.db.execute(
            "INSERT INTO eval_runs (run_id, created_at, golden, git_commit, prompts, models, scores, latency_p50_ms, "
            "cost_usd, recorded_at) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (run_id) DO UPDATE SET "
            "created_at = excluded.created_at, golden = excluded.golden, git_commit = excluded.git_commit, "
            "prompts = excluded.prompts, models = excluded.models, scores = excluded.scores, "
            "latency_p50_ms = excluded.latency_p50_ms, cost_usd = excluded.cost_usd, recorded_at = excluded.recorded_at",
            (report.run_id, report.created_at, report.golden, report.git_commit, json.dumps(report.prompts),
             json.dumps(report.models), json.dumps(report.scores), report.latency_ms["p50"], report.cost_usd,
             datetime.now(timezone.utc).isoformat(timespec="microseconds")))

    def runs(self, golden: str | None = None) -> list[dict]:
        query = "SELECT run_id, created_at, golden, git_commit, prompts, models, scores, latency_p50_ms, cost_usd FROM eval_runs"
        rows = self.db.all(query + (" WHERE golden = ?" if golden else "") + " ORDER BY created_at, recorded_at, run_id",
                           (golden,) if golden else ())
        keys = ("run_id", "created_at", "golden", "git_commit", "prompts", "models", "scores", "latency_p50_ms", "cost_usd")
        out = []
        for row in rows:
            item = dict(zip(keys, row))
            for k in ("prompts", "models", "scores"):
                item[k] = json.loads(item[k])
            out.append(item)
        return out

    def close(self) -> None:
        self.db.close()


def outcome_from_response(response) -> dict:
    """The question path's response (api.schemas.QueryResponse) as the dict ``run_golden`` scores."""
    return {
        "answer": response.answer,
        "decision": response.decision,
        "citations": [c.model_dump() for c in response.citations],
        "claims": [{"text": c.text, "supported": c.verdict == "supported", "score": c.score} for c in response.claims],
        "contexts": [s.text for s in response.sources],
        "latency_ms": response.timings_ms.get("total_ms") or sum(response.timings_ms.values()),
        "cost_usd": response.cost_usd or 0.0,
        "model": response.model,
        "prompt": response.prompt,
    }


def embedding_similarity(encoder) -> Callable[[str, str], float]:
    """Cosine similarity of MiniLM sentence embeddings: a semantic score that paraphrases do not fail."""

    def similarity(a: str, b: str) -> float:
        vectors = encoder.encode([a, b])
        return max(0.0, float(vectors[0] @ vectors[1]))

    return similarity

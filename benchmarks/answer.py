"""Answer benchmark on the demo golden set, through the question path the service uses (not run by the tests).

    .venv/bin/python benchmarks/answer.py [--limit N] [--providers local] [--data-dir DIR] [--cache-only]

Prints, per route and overall: p50/p95 time to first token and in all, completion tokens/s, cost,
correctness against the reference answers (token F1 for answerable questions), citation validity (every
citation points at a passage the model was given, and at least one at a golden document), the share of
unanswerable questions correctly declined (declined by the model or withheld by grounding), and the
grounding decisions. Then the semantic cache: the similarity of paraphrased questions to their
originals versus to other golden questions (which is what a threshold must separate), and the hit rate
when answered questions are replayed paraphrased.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOLDEN = ROOT / "data" / "demo" / "golden.jsonl"
_WORD = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*")
_MARK = re.compile(r"\[\d+\]")


def paraphrase(question: str) -> str:
    """A deterministic rewording: other phrasing, same meaning (no model needed to make the replay set)."""
    q = question.rstrip("?")
    swaps = [(r"^What is\b", "Tell me what is"), (r"^What are\b", "Tell me what are"), (r"^How many\b", "What number of"),
             (r"^How long\b", "For how long"), (r"^Which\b", "What"), (r"^Does\b", "Tell me if"), (r"^Is\b", "Tell me if"),
             (r"^Can\b", "Is it possible that"), (r"^When\b", "At what time"), (r"^How much\b", "What amount"),
             (r"^What\b", "Which"), (r"^Who\b", "Which person"), (r"^How\b", "In what way")]
    for pattern, repl in swaps:
        if re.search(pattern, q):
            q = re.sub(pattern, repl, q, count=1)
            break
    q = q.replace("the K2's", "the camera's").replace("on the K2", "on the camera").replace("the Halden K2", "the K2 camera")
    return q + ", please?"


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = _WORD.findall(_MARK.sub("", prediction).lower()), _WORD.findall(reference.lower())
    if not pred or not ref:
        return float(pred == ref)
    common = sum(min(pred.count(w), ref.count(w)) for w in set(pred))
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def open_index(data_dir: Path):
    from attest_settings import Settings
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester
    from retrieval.store import open_store

    settings = Settings(data_dir=data_dir, local_strong_model="qwen2.5-coder-0.5b")
    store = open_store(settings)
    manifest = Manifest(settings.manifest_url)
    Ingester(settings, store, manifest).run([ROOT / "data" / "demo"])  # idempotent: unchanged files write nothing
    manifest.close()
    return settings, store


def cache_similarity_report(rows, encoder) -> None:
    import numpy as np

    questions = [r["question"] for r in rows]
    originals = encoder.encode(questions, threads=2)
    paraphrased = encoder.encode([paraphrase(q) for q in questions], threads=2)
    same = (originals * paraphrased).sum(axis=1)
    cross = originals @ originals.T
    np.fill_diagonal(cross, -1)
    nearest_other = cross.max(axis=1)
    print("\nsemantic cache: cosine similarity (MiniLM)")
    print(f"  paraphrase vs its original : min {same.min():.3f}  p10 {np.percentile(same, 10):.3f}  median {np.median(same):.3f}")
    print(f"  question vs nearest OTHER  : median {np.median(nearest_other):.3f}  p90 {np.percentile(nearest_other, 90):.3f}  "
          f"max {nearest_other.max():.3f}")
    for threshold in (0.80, 0.85, 0.88, 0.90, 0.92, 0.95):
        hits = float((same >= threshold).mean())
        false = float((nearest_other >= threshold).mean())
        print(f"  threshold {threshold:.2f}: paraphrase hit rate {hits:.0%}, questions with a wrong-question match {false:.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=0, help="Only the first N questions of each kind.")
    parser.add_argument("--providers", default="local")
    parser.add_argument("--cache-only", action="store_true", help="Only the cache similarity analysis (no model).")
    args = parser.parse_args()

    rows = [json.loads(line) for line in GOLDEN.read_text().splitlines() if line.strip()]
    from retrieval.dense import get_dense_encoder

    encoder = get_dense_encoder()
    cache_similarity_report(rows, encoder)
    if args.cache_only:
        return
    if args.limit:
        by_kind = defaultdict(list)
        for row in rows:
            by_kind[row["kind"]].append(row)
        rows = [row for kind_rows in by_kind.values() for row in kind_rows[: args.limit]]

    from api.question import QuestionPath

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="attest-bench-"))
    settings, store = open_index(data_dir)
    path = QuestionPath.build(settings, store, encoder)
    path.pipeline.cache.clear(settings.collection)
    providers = args.providers.split(",")
    per_route: dict[str, list[dict]] = defaultdict(list)
    records = []
    for row in rows:
        response = path.ask(row["question"], providers=providers)
        t = response.timings_ms
        gen_s = (t.get("generate_ms", 0) - t.get("first_token_ms", 0)) / 1000
        given = {s.chunk_id for s in response.sources}
        shown = response.decision in ("served", "repaired") and response.status == "answered"
        record = {
            "id": row["id"], "kind": row["kind"], "route": response.route, "status": response.status,
            "decision": response.decision,
            "ttft_ms": t.get("first_token_ms"), "total_ms": t.get("total_ms"),
            "tok_s": response.tokens.completion / gen_s if gen_s > 0 else None, "cost": response.cost_usd or 0.0,
            "f1": token_f1(response.answer if shown else "", row["reference_answer"]) if row["answerable"] else None,
            "declined_ok": (not shown) if not row["answerable"] else None,
            "citations_valid": all(c.chunk_id in given for c in response.citations) if shown else None,
            "golden_doc_cited": any(c.doc_id in row["doc_ids"] for c in response.citations)
            if shown and row["doc_ids"] else None,
            "answer": response.answer,
        }
        records.append(record)
        per_route[response.route].append(record)
        print(f"{row['id']} {row['kind']:12} {response.route:12} {response.decision:10} "
              f"{t.get('total_ms', 0) / 1000:6.1f}s {response.answer[:90]}", flush=True)

    def summary(name, recs):
        def vals(key):
            return [r[key] for r in recs if r[key] is not None]
        f1, dec, cit, gold = vals("f1"), vals("declined_ok"), vals("citations_valid"), vals("golden_doc_cited")
        mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
        print(f"{name:14} n={len(recs):3}  ttft p50 {pct(vals('ttft_ms'), .5) / 1000:5.1f}s p95 {pct(vals('ttft_ms'), .95) / 1000:5.1f}s  "
              f"total p50 {pct(vals('total_ms'), .5) / 1000:5.1f}s p95 {pct(vals('total_ms'), .95) / 1000:5.1f}s  "
              f"tok/s {statistics.median(vals('tok_s')) if vals('tok_s') else float('nan'):4.1f}  cost ${sum(vals('cost')):.4f}  "
              f"F1 {mean(f1):.2f}  cites valid {mean(cit):.0%} golden-doc {mean(gold):.0%}  declined-ok {mean(dec):.0%}")

    print("\nper route")
    for route, recs in sorted(per_route.items()):
        summary(route, recs)
    summary("all", records)

    decisions = defaultdict(int)
    for record in records:
        decisions[record["decision"]] += 1
    print("decisions " + ", ".join(f"{k} {v}" for k, v in sorted(decisions.items())))

    # Only served (or repaired) answers enter the cache: replay those, paraphrased.
    cached = [(row, rec) for row, rec in zip(rows, records)
              if rec["status"] == "answered" and rec["decision"] in ("served", "repaired")]
    hits = wrong = 0
    for row, rec in cached:
        response = path.ask(paraphrase(row["question"]), providers=providers)
        if response.served_from == "cache":
            hits += 1
            wrong += response.cache.question != row["question"]
    if cached:
        print(f"\ncache replay (threshold {settings.cache_threshold}): {hits}/{len(cached)} paraphrases served from "
              f"the cache ({hits / len(cached):.0%}), {wrong} from a different question's entry")
    path.close()
    store.close()


if __name__ == "__main__":
    main()

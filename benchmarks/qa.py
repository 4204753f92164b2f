"""The golden-run machinery on HotpotQA: 100 dev questions, their context paragraphs as the corpus.

    python benchmarks/qa.py [--data ../shared/data/qa/hotpotqa-dev-100.jsonl] [--limit 100] [--risk low]

Each question's ten paragraphs (two gold, eight distractors) are ingested into one collection (a
paragraph's id is its title); then retrieve -> answer -> verify runs on every question and the run is
scored like `attest eval golden`: answer token F1 and exact match against the short reference answer,
faithfulness (share of claims the verifier supports), the share of answers served / repaired /
rejected, citation recall of the gold paragraphs, and latency. The reference answers are short spans
("yes", a name, a year) while attest answers in sentences, so exact match is near zero by design and
token F1 is the fairer figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load_hotpot(path: Path, limit: int):
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()][:limit]
    paragraphs, cases = {}, []
    for row in rows:
        for title, sentences in row["context"]:
            paragraphs[title] = "".join(sentences).strip()
        gold = [fact[0] for fact in row["supporting_facts"]]
        cases.append({"id": row["_id"], "question": row["question"], "reference_answer": row["answer"],
                      "answerable": True, "doc_ids": sorted(set(gold)), "passages": [], "kind": row.get("type", "")})
    return paragraphs, cases


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "qa" / "hotpotqa-dev-100.jsonl"))
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--risk", default="low", choices=["low", "high"])
    parser.add_argument("--data-dir", default=None, help="attest data folder (default: a temporary one)")
    parser.add_argument("--json", dest="json_out", help="write the full report here")
    args = parser.parse_args()

    from attest_settings import Settings
    from api.question import QuestionPath
    from evaluation.golden import embedding_similarity, outcome_from_response, run_golden
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester
    from retrieval.store import EdgeStore

    settings = Settings(data_dir=Path(args.data_dir or tempfile.mkdtemp(prefix="attest-qa-")))
    store, manifest = EdgeStore(settings.edge_dir), Manifest(settings.manifest_url)
    ingester = Ingester(settings, store, manifest)
    paragraphs, cases = load_hotpot(Path(args.data), args.limit)
    started = time.perf_counter()
    ingester.run_records(((title, "", text) for title, text in paragraphs.items()), "hotpotqa", "hotpotqa")
    print(f"ingested {len(paragraphs)} paragraphs in {time.perf_counter() - started:.0f} s")
    path = QuestionPath.build(settings, store, ingester.encoder)
    done = [0]

    def ask(question):
        done[0] += 1
        response = path.ask(question, collection="hotpotqa", risk=args.risk)
        print(f"  [{done[0]}/{len(cases)}] {response.decision:18} {response.answer[:90]!r}", flush=True)
        return outcome_from_response(response)

    report = run_golden(cases, ask, "hotpotqa-dev-100", embedding_similarity(ingester.encoder))
    path.close()
    store.close()
    served = {k: v / len(report.cases) for k, v in report.decisions.items()}
    print(f"\nHotpotQA dev, {len(report.cases)} questions, risk {args.risk}, models {', '.join(report.models)}")
    for key in ("answer_f1", "answer_exact_match", "answer_semantic", "citation_recall", "faithfulness"):
        print(f"  {key:20} {report.scores[key]:.4f}")
    print("  decisions            " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in sorted(served.items())))
    print(f"  latency              p50 {report.latency_ms['p50'] / 1000:.1f} s, p95 {report.latency_ms['p95'] / 1000:.1f} s")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report.to_dict(), indent=2))


if __name__ == "__main__":
    main()

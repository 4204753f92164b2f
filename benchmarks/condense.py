"""What condensing the passages costs in evidence and saves in prompt tokens (no answer model; seconds, not hours).

    python benchmarks/condense.py [--keep 2,3,4] [--passages 5,4,3] [--out report.json]

For each ``passages`` x ``keep`` (the first n hits; sentences per passage, answer/condense.py; 0 = whole
passages) over the questions' real retrieved passages (hybrid search as the question path runs it, top
``answer_passages`` unless ``--passages`` names counts):
- prompt tokens of the rendered answer prompt, counted with the local model's own tokenizer (vocab only);
- evidence kept: the share of questions whose evidence is still in the text the model reads, of those whose
  evidence was retrieved at all. Demo golden set (answerable questions): its reference passage snippet.
  HotpotQA dev 100 (all ten paragraphs indexed): each supporting-fact sentence that was retrieved;
- the time condensing takes (splitting + embedding the sentences; grounding reuses those embeddings).
Answer quality and first-token time with the model are measured end to end by benchmarks/answers_dev.py.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
HOTPOT = ROOT.parent / "shared" / "data" / "qa" / "hotpotqa-dev-100.jsonl"


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", default="0,2,3,4")
    parser.add_argument("--passages", default="",
                        help="passage counts to compare, e.g. 5,4,3 (default: answer_passages alone)")
    parser.add_argument("--hotpot", type=int, default=100, help="HotpotQA questions (0 to skip)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from llama_cpp import Llama

    from answer.condense import condensed_views
    from answer.models import ensure_model_file
    from answer.passages import NumberedPassages
    from answer.prompts import load_prompt
    from attest_settings import Settings
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester
    from retrieval.dense import get_dense_encoder
    from retrieval.search import Retriever
    from retrieval.store import EdgeStore

    data_dir = Path(tempfile.mkdtemp(prefix="attest-condense-"))
    settings = Settings(data_dir=data_dir)
    encoder = get_dense_encoder()
    tokenizer = Llama(str(ensure_model_file(settings.local_model, settings.data_dir / "cache" / "models")),
                      vocab_only=True, verbose=False)
    prompt = load_prompt(settings.answer_prompt)
    store = EdgeStore(settings.edge_dir)
    manifest = Manifest(settings.manifest_url)
    ingester = Ingester(settings, store, manifest, encoder)

    cases = []  # (set, question, evidence snippets, collection)
    ingester.run([ROOT / "data" / "demo"])
    for line in open(ROOT / "data" / "demo" / "golden.jsonl"):
        case = json.loads(line)
        if case["answerable"]:
            cases.append(("demo", case["question"], case["passages"], settings.collection))
    if args.hotpot:
        folder = data_dir / "hotpot"
        folder.mkdir()
        seen = set()
        for i, line in enumerate(open(HOTPOT)):
            if i >= args.hotpot:
                break
            q = json.loads(line)
            for title, sentences in q["context"]:
                if title not in seen:
                    seen.add(title)
                    (folder / f"{len(seen):05d}.md").write_text(f"# {title}\n\n{''.join(sentences)}\n")
            paragraphs = dict((title, sentences) for title, sentences in q["context"])
            # supporting_facts: [title, [sentence indices], ...]: the gold sentences of the gold paragraphs
            wanted = [paragraphs[fact[0]][n] for fact in q["supporting_facts"] if fact[0] in paragraphs
                      for n in fact[1] if n < len(paragraphs[fact[0]])]
            cases.append(("hotpot", q["question"], [s.strip() for s in wanted if s.strip()], "hotpot"))
        Ingester(settings.model_copy(update={"collection": "hotpot"}), store, manifest, encoder).run([folder])

    counts = [int(n) for n in args.passages.split(",") if n] or [settings.answer_passages]
    retriever = Retriever(settings, store, encoder)
    retrieved = []
    for kind, question, evidence, collection in cases:
        vector = encoder.encode_query(question)
        hits = retriever.search(question, collection, max(counts), "hybrid", None,
                                dense_vector=vector).hits
        whole = _norm(" ".join(h.text for h in hits))
        # evidence in the most passages compared: what fewer passages or condensing can lose
        present = [e for e in evidence if _norm(e)[:60] in whole]
        retrieved.append((kind, question, present, hits, vector))

    report = {}
    for n, keep in [(n, int(k)) for n in counts for k in args.keep.split(",")]:
        rows = {"demo": [], "hotpot": []}
        for kind, question, present, hits, vector in retrieved:
            passages = NumberedPassages(hits[:n])
            t = time.perf_counter()
            views = condensed_views(question, vector, passages, encoder, keep)
            seconds = time.perf_counter() - t
            messages = prompt.render(question, views)
            tokens = sum(len(tokenizer.tokenize(m.content.encode(), add_bos=False, special=True)) for m in messages)
            read = _norm(" ".join(v.text for v in views))
            kept = [e for e in present if _norm(e)[:60] in read]
            rows[kind].append({"tokens": tokens, "present": len(present), "kept": len(kept), "ms": seconds * 1000})
        label = str(keep) if len(counts) == 1 else f"{n}x{keep}"
        report[label] = {}
        for kind, got in rows.items():
            if not got:
                continue
            with_evidence = [r for r in got if r["present"]]
            report[label][kind] = {
                "questions": len(got),
                "prompt_tokens_mean": round(statistics.mean(r["tokens"] for r in got), 1),
                "prompt_tokens_p95": sorted(r["tokens"] for r in got)[int(0.95 * (len(got) - 1))],
                "evidence_retrieved": len(with_evidence),
                "all_evidence_kept": round(sum(r["kept"] == r["present"] for r in with_evidence)
                                           / max(1, len(with_evidence)), 3),
                "some_evidence_kept": round(sum(r["kept"] > 0 for r in with_evidence) / max(1, len(with_evidence)), 3),
                "condense_ms_p50": round(statistics.median(r["ms"] for r in got), 1),
            }
    base = next(iter(report.values()))  # the first count's first keep: the reference of the ratios
    print(f"{'keep':>4} {'set':<7} {'questions':>9} {'tokens':>7} {'ratio':>6} {'all kept':>9} {'some kept':>10} {'ms p50':>7}")
    for keep, by_set in report.items():
        for kind, r in by_set.items():
            ratio = r["prompt_tokens_mean"] / base[kind]["prompt_tokens_mean"]
            print(f"{keep:>4} {kind:<7} {r['questions']:>9} {r['prompt_tokens_mean']:>7.0f} {ratio:>6.2f} "
                  f"{r['all_evidence_kept']:>9.3f} {r['some_evidence_kept']:>10.3f} {r['condense_ms_p50']:>7.1f}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    store.close()
    manifest.close()


if __name__ == "__main__":
    main()

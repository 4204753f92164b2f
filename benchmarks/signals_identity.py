"""Signals identity: every deterministic grounding signal, veto and restated-question verdict on fixed inputs,
so that a change to grounding/checks.py can show it changed none of them.

    python benchmarks/signals_identity.py --out /tmp/signals_before.json     # before the change
    python benchmarks/signals_identity.py --compare /tmp/signals_before.json  # after: prints what differs

No model is loaded (the service picks evidence with the MiniLM encoder; here a plain word-overlap ranking
stands in for it, fixed by this script, so the inputs are the same before and after): about 20 s on 2 cores.
Inputs:
- the 868 SciFact claim/context pairs, each claim against (a) every sentence of its context and (b) the three
  sentences sharing most words with it;
- every sentence of the demo golden set's reference answers against its own documents (the whole corpus as
  the term check's sources) and against the next question's documents (sources: those documents), each
  with its own question and the next one (restates_question), plus each question said back as a statement;
- answers seen in golden runs and the claims of tests/test_grounding.py ("149 euros", "USD 35", "weighs ...
  pixels"), plus one written here, against every demo document;
- every sentence of every demo document against the next document (where the number and term vetoes fire).
Per case: the service's signal dict (``ClaimScorer.signals``, which adds the term check and the similarity
summaries to ``deterministic_signals``), ``veto_reasons`` under the four veto settings, ``contained``, and
``restates_question`` and the vetoes grounding/decide.py adds where there is a question; per distinct text: ``numbers_in``, ``content_words``,
``salient_tokens`` (evidence selection uses them) and the BM25 tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from grounding import checks  # noqa: E402
from grounding.evidence import Evidence, EvidenceSentence, passage_sentences  # noqa: E402
from grounding.verifier import ClaimScorer, ScoreItem, contained, veto_reasons  # noqa: E402
from retrieval.bm25 import tokenize  # noqa: E402

DEFAULT_PAIRS = ROOT.parent / "shared" / "data" / "grounding" / "scifact-claims-train.jsonl"
DEMO = ROOT / "data" / "demo"
_WORDS = re.compile(r"[a-z0-9]+")
VETO_SETTINGS = {"number+term": (True, True), "number": (True, False), "term": (False, True), "none": (False, False)}


# Answers seen in golden runs and the claims of tests/test_grounding.py, and one written here for the units.
SEEN_ANSWERS = [
    "The Halden K2 weighs 6240 x 4160 pixels (3:2).", "The cost of the Halden K2 body is 149 euros.",
    "It costs €149.", "Care+ for the K2 body costs USD 149.",
    "The cost of a spare battery for the Halden K2 is USD 35.",
    "The company manufactures the image sensor in the Halden K2.", "26.1 megapixels.", "It is a lithium-ion battery.",
    "Repairs are completed within 3 business days.", "Care+ cannot be transferred to a new owner.",
    "The warranty lasts 35 months.", "The battery lasts about two hours and costs 49 dollars.",
]


def _words(text: str) -> set[str]:
    return set(_WORDS.findall(text.lower()))


def evidence_of(claim: str, sentences: list[str], k: int | None) -> Evidence:
    """The ``k`` sentences sharing most words with the claim (all of them when ``k`` is None), in reading
    order, with that share as their similarity: fixed here, whatever the checks do."""
    cw = _words(claim) or {""}
    shares = [len(cw & _words(s)) / len(cw) for s in sentences]
    chosen = range(len(sentences)) if k is None else sorted(
        sorted(range(len(sentences)), key=lambda i: (-shares[i], i))[:k])
    return Evidence([EvidenceSentence(1, "ctx", i, sentences[i], round(shares[i], 6)) for i in chosen])


_SCORER = object.__new__(ClaimScorer)  # ClaimScorer.signals needs no model


def case(claim: str, evidence: Evidence, context: str, sources: str | None, question: str | None) -> dict:
    signals = _SCORER.signals(ScoreItem(claim, evidence, context, sources))
    out = {"signals": signals,
           "vetoes": {name: veto_reasons(signals, n, t) for name, (n, t) in VETO_SETTINGS.items()},
           "contained": contained(signals)}
    if question is not None:
        out["restates_question"] = checks.restates_question(claim, question)
        out["question_vetoes"] = question_vetoes(claim, question)
    return out


def question_vetoes(claim: str, question: str) -> list[str]:
    """What grounding/decide.py appends to a supported claim's vetoes (before the registry: restates_question)."""
    if hasattr(checks, "question_vetoes"):
        return checks.question_vetoes(claim, question)
    return ["restates_question"] if checks.restates_question(claim, question) else []


def text_record(text: str) -> dict:
    return {"numbers_in": sorted(checks.numbers_in(text)), "content_words": sorted(checks.content_words(text)),
            "salient_tokens": sorted(checks.salient_tokens(text)), "bm25": tokenize(text)}


def demo_documents() -> dict[str, str]:
    from ingest.reader import read_file

    docs = {}
    for path in sorted(DEMO.rglob("*")):
        if path.is_file() and path.name != "README.md" and path.suffix != ".jsonl":
            docs[path.relative_to(DEMO).as_posix()] = "\n\n".join(s.text for s in read_file(path).sections)
    return docs


def collect(pairs_path: Path) -> dict:
    cases: dict[str, dict] = {}
    texts: set[str] = set()

    pairs = [json.loads(line) for line in pairs_path.read_text().splitlines() if line.strip()]
    for row in pairs:
        sentences = passage_sentences(row["context"])
        texts.update([row["claim"], *sentences])
        for name, k in (("all", None), ("top3", 3)):
            cases[f"scifact/{row['id']}/{name}"] = case(row["claim"], evidence_of(row["claim"], sentences, k),
                                                        row["context"], None, None)

    docs = demo_documents()
    corpus = "\n\n".join(docs.values())
    doc_sentences = {d: passage_sentences(text) for d, text in docs.items()}
    golden = [json.loads(line) for line in (DEMO / "golden.jsonl").read_text().splitlines() if line.strip()]
    demo_sentences = 0
    for i, item in enumerate(golden):
        nxt = golden[(i + 1) % len(golden)]
        own = [d for d in item["doc_ids"]] or ["support/faq.md"]
        other = [d for d in nxt["doc_ids"]] or ["support/troubleshooting.pdf"]
        claims = passage_sentences(item["reference_answer"]) + [item["question"].rstrip(" ?") + "."]
        for j, claim in enumerate(claims):
            demo_sentences += 1
            texts.add(claim)
            for name, doc_ids, sources in (("own", own, corpus), ("next", other, None)):
                context = "\n\n".join(docs[d] for d in doc_ids)
                sentences = [s for d in doc_ids for s in doc_sentences[d]]
                evidence = evidence_of(claim, sentences, 3)
                for q_name, question in (("q", item["question"]), ("next_q", nxt["question"])):
                    cases[f"demo/{item['id']}/{j}/{name}/{q_name}"] = case(claim, evidence, context, sources, question)

    # Answers seen in golden runs (tests/test_grounding.py), against every document: the vetoes' own cases.
    for j, claim in enumerate(SEEN_ANSWERS):
        texts.add(claim)
        for n, (doc_id, text) in enumerate(docs.items()):
            demo_sentences += 1
            evidence = evidence_of(claim, doc_sentences[doc_id], 3)
            cases[f"seen/{j}/{doc_id}"] = case(claim, evidence, text, corpus if n % 2 else None,
                                               golden[(j + n) % len(golden)]["question"])

    names = list(docs)
    for n, doc_id in enumerate(names):
        other = names[(n + 1) % len(names)]
        texts.update(doc_sentences[doc_id])
        for j, claim in enumerate(doc_sentences[doc_id]):
            demo_sentences += 1
            evidence = evidence_of(claim, doc_sentences[other], 3)
            question = golden[j % len(golden)]["question"]
            cases[f"corpus/{doc_id}/{j}"] = case(claim, evidence, docs[other], None, question)

    return {"counts": {"scifact_pairs": len(pairs), "demo_claims": demo_sentences, "cases": len(cases),
                       "texts": len(texts)},
            "cases": cases, "texts": {t: text_record(t) for t in sorted(texts)}}


def flatten(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}/{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def compare(old: dict, new: dict, show: int = 20) -> int:
    a = flatten({"cases": old["cases"], "texts": old["texts"]})
    b = flatten({"cases": new["cases"], "texts": new["texts"]})
    def same(key: str) -> bool:  # type and value: 1 == 1.0 == True in Python, not in the JSON a caller stores
        x, y = a.get(key, "<missing>"), b.get(key, "<missing>")
        return type(x) is type(y) and x == y

    differing = sorted(k for k in a.keys() | b.keys() if not same(k))
    print(f"compared {len(a.keys() | b.keys())} values over {new['counts']['cases']} cases "
          f"({new['counts']['scifact_pairs']} SciFact pairs, {new['counts']['demo_claims']} demo claims) "
          f"and {new['counts']['texts']} texts: {len(differing)} differ")
    for key in differing[:show]:
        print(f"  {key}: {a.get(key, '<missing>')!r} -> {b.get(key, '<missing>')!r}")
    return len(differing)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    parser.add_argument("--out", type=Path, help="write the signals here (JSON)")
    parser.add_argument("--compare", type=Path, help="a file an earlier run wrote: print what differs")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = collect(args.pairs)
    print(f"{result['counts']} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    if args.out:
        args.out.write_text(json.dumps(result, sort_keys=True))
    if args.compare:
        return 1 if compare(json.loads(args.compare.read_text()), json.loads(json.dumps(result))) else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

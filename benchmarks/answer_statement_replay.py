"""Replays the short answers an answers_dev run kept through the short-answer check alone (no answer model):
how well does each form of the statement separate right short answers from wrong ones?

The answer check verifies the question and the short answer as one statement. This script retrieves the
passages the server would give the model (same index, same collection, `answer_passages` hits), scores
each form of the statement against them with the verifier the settings name (the shipped one, or
ATTEST_GROUNDING_VERIFIER_DIR's candidate), plus two signals that need no model (does the sentence stating
the answer talk about what the question asks?), and reports AUROC (right vs wrong short answers) and what
the low-risk threshold would serve. Minutes instead of the 40 of a full answers_dev run, so designs of the
answer check can be compared before one is measured end to end. A short answer is "right" when it contains
the reference; the rows come from runs over questions 0-49, so whatever is chosen here must then be
measured on other questions.

The README's 82 answers (add --judge for the 1.5B's P(yes): ~35 s an answer on 2 cores):

    cd benchmarks/outputs && python ../answer_statement_replay.py --data-dir /tmp/adev \
        answers_dev-low-0-49-v1.json answers_dev-low-0-49-v2.json answers_dev-low-answer2.json \
        answers_dev-low-answer3-absent.json answers_dev-low-answer3-present.json
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from answers_dev import contains, ensure_index, load, normalise  # noqa: E402
from grounding.claims import answer_statement  # noqa: E402


_WH = r"(?:which|what|whom|whose|who|where|when|how many|how much|how long|how old)"
_AUX = r"(?:is|was|are|were|has|have|had|did|does|do|can|could|will|would)"
_WH_LAST = re.compile(rf"\b{_WH}\b(?!.*\b{_WH}\b)", re.I)
# "[In] which city [N ...] is X ...": the wh-phrase, then the first auxiliary, then the rest.
_WH_FRONTED = re.compile(rf"^(?P<prep>(?:in|on|at|from|for|by|to|of|with)\s+)?{_WH}\b(?P<noun>.*?)\s*\b(?P<aux>{_AUX})\b"
                         rf"\s*(?P<rest>.*)$", re.I)
_INVERTING = {"did", "does", "do"}


def declarative_statement(question: str, short_answer: str | None) -> str | None:
    """The short answer put where the question's wh-phrase is, as a sentence a verifier trained on claims
    reads: "Western Star Trucks is a subsidiary of which company?" + "Daimler AG" -> "Western Star Trucks is
    a subsidiary of Daimler AG."; "Who was the actress who played X?" + "Y" -> "Y was the actress who played
    X."; "When did the strike end?" + "5 May" -> "the strike end in 5 May.". A rough rewrite (no verb
    morphology), enough to put the answer in the question's relation; questions it does not recognise
    (yes/no, either/or) keep :func:`answer_statement`'s form."""
    q = " ".join(question.split()).rstrip(" ?.!")
    answer = " ".join((short_answer or "").split()).rstrip(".")
    if not q or not answer:
        return None
    if re.search(r"\bor\b", q, re.I) and "," in q:  # either/or: the answer is one of the question's words
        return answer_statement(question, short_answer)
    fronted = _WH_FRONTED.match(q)
    if fronted and len(fronted["noun"].split()) <= 4:
        aux, rest, prep = fronted["aux"], fronted["rest"], (fronted["prep"] or "").strip().lower()
        if prep:  # "In which city is X" -> "X is in A"
            return f"{rest} {aux} {prep} {answer}."
        if aux.lower() in _INVERTING:  # "When did X end" -> "X end in A"; "What did X write" -> "X write A"
            wh = q.split()[0].lower()
            return f"{rest} {'in ' if wh in ('when', 'where') else ''}{answer}."
        return f"{answer} {aux} {rest}."  # "Who was X" / "What Canadian has produced X" -> "A was X"
    if re.match(r"who\s", q, re.I):  # "Who won X" -> "A won X"
        return f"{answer} {q.split(' ', 1)[1]}."
    last = _WH_LAST.search(q)
    if last and last.start() > 0:  # "X is based in which city" -> "X is based in A"
        return f"{q[:last.start()].rstrip()} {answer}."
    return answer_statement(question, short_answer)


def answer_window_signals(question: str, short: str, passages: list[str], encoder) -> dict:
    """Where the passages state the short answer, do they talk about what the question asks? For every
    sentence holding the answer (with the sentence before it, for "It ..."): the share of the question's
    content words it holds, and its cosine to the question. 0 when no sentence holds the answer."""
    from grounding.checks import content_words
    from grounding.evidence import passage_sentences

    wanted, answer = content_words(question) - content_words(short), f" {normalise(short)} "
    windows = []
    for text in passages:
        sentences = passage_sentences(text)
        for i, sentence in enumerate(sentences):
            if answer in f" {normalise(sentence)} ":
                windows.append(" ".join(sentences[max(0, i - 1):i + 1]))
    if not windows or not wanted:
        return {"question_words_near_answer": 0.0, "question_cosine_near_answer": 0.0}
    overlap = max(len(wanted & content_words(w)) / len(wanted) for w in windows)
    vectors = encoder.encode([question, *windows])
    cosine = max(float(vectors[0] @ v) for v in vectors[1:])
    return {"question_words_near_answer": round(overlap, 4), "question_cosine_near_answer": round(cosine, 4)}


def rows_with_short_answers(paths: list[Path], cases: list[dict]) -> list[dict]:
    """(question, collection, short answer) once each, labelled right when it contains the reference (the
    output files' "answer" is what was served: the reference comes from the question file)."""
    references = {case["question"]: case["answer"] for case in cases}
    seen, rows = set(), []
    for path in paths:
        for row in json.loads(path.read_text()):
            short = row.get("draft_short_answer") or row.get("short_answer")
            reference = references.get(row["question"])
            if row.get("collection") not in ("absent", "present") or not short or not reference:
                continue
            key = (row["question"], row["collection"], short)
            if key not in seen:
                seen.add(key)
                rows.append({"index": row["index"], "question": row["question"], "collection": row["collection"],
                             "short": short, "right": contains(short, reference), "reference": reference,
                             "cited": sorted({int(n) for n in re.findall(r"\[(\d+)\]", row.get("draft") or "")})})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outputs", nargs="+", type=Path, help="answers_dev output files")
    parser.add_argument("--data-dir", type=Path, required=True, help="answers_dev's index (built if missing)")
    parser.add_argument("--out", type=Path, help="per-row scores as JSON")
    parser.add_argument("--judge", action="store_true",
                        help="also ask the answer judge (the 1.5B, the shipped answer_prompt) about each short answer")
    parser.add_argument("--judge-passages", choices=("all", "cited"), default="all",
                        help="the judge reads every passage the model read, or only those its draft cites "
                             "(all of them when it cites none)")
    args = parser.parse_args()

    from sklearn.metrics import roc_auc_score

    from attest_settings import Settings
    from grounding.judge import answer_prompt
    from grounding.verifier import ClaimScorer, build_judge
    from retrieval.search import Retriever
    from retrieval.store import open_store

    settings = Settings(data_dir=args.data_dir)
    absent, present, cases = load(100, 0)
    ensure_index(args.data_dir, absent, present)
    store = open_store(settings)
    retriever = Retriever(settings, store)
    scorer = ClaimScorer.from_settings(settings, encoder=retriever.encoder)
    judge = build_judge(settings) if args.judge else None
    rows = rows_with_short_answers(args.outputs, cases)
    forms = {"question + answer": answer_statement, "declarative": declarative_statement}
    for done, row in enumerate(rows):
        if done % 10 == 0:
            print(f"{done}/{len(rows)} scored", flush=True)
        hits = retriever.search(row["question"], row["collection"], settings.answer_passages).hits
        context = "\n\n".join(h.text for h in hits)
        row["statements"] = {name: make(row["question"], row["short"]) for name, make in forms.items()}
        scored = scorer.score_pairs([(s, context) for s in row["statements"].values()])
        row["scores"] = {name: round(s.score, 4) for name, s in zip(forms, scored)}
        row["scores"].update(answer_window_signals(row["question"], row["short"], [h.text for h in hits],
                                                   retriever.encoder))
        if judge is not None:  # the service asks about the short answer and its sentences; here the short answer
            read = [h.text for h in hits]
            if args.judge_passages == "cited" and any(0 < n <= len(read) for n in row["cited"]):
                read = [read[n - 1] for n in row["cited"] if 0 < n <= len(read)]
            row["scores"]["answer_judge"] = round(judge.p_yes(answer_prompt(read, row["question"], row["short"])), 4)
            if getattr(judge, "last_call", None) is not None:
                row["judge_prompt_tokens"] = judge.last_call.prompt_tokens
    store.close()

    labels = [int(r["right"]) for r in rows]
    low = scorer.threshold("low")
    print(f"{len(rows)} short answers ({sum(labels)} right); low-risk threshold {low:.3f}")
    for name in rows[0]["scores"]:
        scores = [r["scores"][name] for r in rows]
        cut = settings.grounding_answer_judge_thresholds["low"] if name == "answer_judge" else low
        if name not in forms and name != "answer_judge":
            print(f"{name:>28}: AUROC {roc_auc_score(labels, scores):.3f}")
            continue
        served_wrong = sum(1 for r, s in zip(rows, scores) if s >= cut and not r["right"])
        served_right = sum(1 for r, s in zip(rows, scores) if s >= cut and r["right"])
        print(f"{name:>28}: AUROC {roc_auc_score(labels, scores):.3f}; at {cut:.3f} serves {served_right}/{sum(labels)} "
              f"right, {served_wrong}/{len(rows) - sum(labels)} wrong")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

"""Replays the answers attest served in answers_dev runs through forms of the answer judge's prompt (no answer
model): which form best tells an answer the sources state from one they do not? (not run by the tests)

    python benchmarks/answer_judge_replay.py --data-dir /tmp/adev --out scores.json \
        benchmarks/outputs/answers_dev-low-0-49-v1.json benchmarks/outputs/answers_dev-low-0-49-v2.json

Each served answer (decision served or repaired at risk low) is put to the judge as the server puts it
(grounding/decide.py ``_answer_check``): the short answer, when one was served, then the served sentences,
against the passages they cite (all the retrieved ones when they cite none), retrieved again from the same
index. Labels: an answer served from the ``absent`` collection or to a demo question with no answer is
wrong (the sources do not state the answer); one from ``present`` is right when it contains the reference.
The demo's answerable questions have sentence references, not spans: their answers are replayed only with
``--labels`` (hand labels, benchmarks/outputs/demo-answer-labels.json).
Reported per form: AUROC (right vs wrong), and at each threshold how many wrong answers would still be
served and how many right ones kept. Questions 0-49 were the ones the judge's threshold was chosen on; a form
chosen here must be measured on others (50-99).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from answers_dev import ensure_index, load  # noqa: E402
from grounding.claims import markers, strip_markers  # noqa: E402
from grounding.evidence import Passage, answer_judge_documents, passage_sentences  # noqa: E402
from grounding.judge import ANSWER_QUESTION, SYSTEM, answer_prompt, chat_prompt, numbered  # noqa: E402

ANSWER_QUESTION_V1 = "Do the documents state that the proposed answer is the answer to the question? Answer Yes or No."


def form_v1(documents, question, answer):
    """answer-judge@1, the form shipped before stop 26."""
    return answer_prompt(documents, question, answer, instruction=ANSWER_QUESTION_V1)


def form_answerable(documents, question, answer):
    """The answer left out: do the documents hold the answer to the question at all?"""
    return (f"Documents:\n{numbered(documents)}\n\nQuestion: {question.strip()}\n\n"
            "Do the documents contain the information needed to answer this question? Answer Yes or No.")


def form_answer_first(documents, question, answer):
    return (f"Question: {question.strip()}\nProposed answer: {answer.strip()}\n\nDocuments:\n{numbered(documents)}"
            f"\n\n{ANSWER_QUESTION_V1}")


FORMS = {"answer-judge@1": form_v1, "shipped": answer_prompt, "answerable": form_answerable,
         "answer_first": form_answer_first}
# The shipped prompt over each passage cut to its N sentences best matching the question and the served answer,
# as grounding_answer_judge_sentences=N has the server do (grounding/evidence.py answer_judge_documents).
CUT_FORMS = {f"cut{n}": n for n in (1, 2, 3, 4, 6)}
# One judge call per piece of the served answer (the short answer, each sentence) as the proposed answer, over the
# same cut documents as cutN (so the calls after the first reuse the documents' KV prefix); the pieces' P(yes)
# combined four ways, each reported as its own form: "<form>:max", ":mean", ":min", ":first" (the short answer, or
# the first sentence). A two-part answer is judged part by part; cutN judges the whole answer as one.
PIECE_FORMS = {f"pieces{n}": n for n in (2,)}
PIECE_AGGREGATES = {"max": max, "mean": lambda ps: sum(ps) / len(ps), "min": min, "first": lambda ps: ps[0]}
# Contextual calibration ("Calibrate Before Use", Zhao et al. 2021): the pieces2 calls, plus the judge's P(yes) for a
# content-free proposed answer over the same documents and question (its prefill reused). The score is the best
# piece's log-odds minus the content-free answer's, as a probability: how much more the judge believes this answer
# than it believes nothing at all, so that a question whose documents make the judge say Yes to anything (or No to
# everything) is read against its own baseline. "<form>:<null>" for each content-free answer.
CONTRAST_FORMS = {f"contrast{n}": n for n in (2,)}
NULL_ANSWERS = {"na": "N/A", "unknown": "unknown", "empty": "(no answer)"}


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# The judge's rules moved from the end of the user turn into the system prompt, which every judge call of every
# request shares (llama.cpp keeps it in the KV cache between requests on the fast route), so that only the
# documents, question and answer are prefilled: "rules2" reads what pieces2 reads, with the rules first. Both it
# and "pieces2primed" (pieces2's own prompts) are timed from a KV cache that already holds the prompt's opening
# up to the documents, as the server's judge finds it after the previous request.
RULES_FORMS = {"rules2": 2, "pieces2primed": 2}
ANSWER_RULES = ANSWER_QUESTION.removesuffix(" Answer Yes or No.")


def rules_prompt(documents: list[str], question: str, answer: str) -> str:
    return chat_prompt(answer_prompt(documents, question, answer, instruction="Answer Yes or No."),
                       system=f"{SYSTEM} {ANSWER_RULES}")


def served_prompt(documents: list[str], question: str, answer: str) -> str:
    """pieces2's prompt as LlamaJudge.p_yes wraps it."""
    return chat_prompt(answer_prompt(documents, question, answer))


def prime(judge, prompt: str) -> None:
    """The KV cache as the previous request leaves it: holding the prompt's opening up to its documents."""
    llama = judge.loaded.llama
    opening = prompt[: prompt.index("Documents:\n")]
    llama.n_tokens = 0
    llama.eval(llama.tokenize(opening.encode("utf-8"), add_bos=False, special=True))


SELF_ANSWER_SYSTEM = "You answer questions only from the documents you are given."


def self_answer(judge, documents: list[str], question: str, served: str) -> tuple[float, str, int]:
    """The judge answers the question itself, in a few words from the documents or "unknown"; the score is
    the share of its answer's words that the served answer holds (0 when it says unknown). Measured in stop 26
    and not shipped: it says "unknown" to right answers too (README)."""
    from answers_dev import normalise

    prompt = chat_prompt(f"Documents:\n{numbered(documents)}\n\nQuestion: {question.strip()}\n\nReply with only the "
                         "words of the documents that answer the question (a name, date, number or short phrase). If "
                         "the documents do not state the answer, reply: unknown", system=SELF_ANSWER_SYSTEM)
    llama = judge.loaded.llama
    with judge.loaded.lock:
        out = llama.create_completion(prompt, max_tokens=24, temperature=0.0, stop=["<|im_end|>", "\n"])
    text = out["choices"][0]["text"].strip()
    words = normalise(text).split()
    if not words or "unknown" in words:
        return 0.0, text, out["usage"]["prompt_tokens"]
    held = set(normalise(served).split())
    return round(sum(w in held for w in words) / len(words), 4), text, out["usage"]["prompt_tokens"]


def served_rows(paths: list[Path], labels: dict | None = None) -> list[dict]:
    """Every distinct answer shown at risk low, labelled, with the judge's input rebuilt from the row.
    ``labels`` ((question, served answer) -> right) labels the demo's answerable questions' answers."""
    seen, rows, labels = set(), [], labels or {}
    for path in paths:
        for row in json.loads(path.read_text()):
            if row.get("risk") != "low" or row.get("declined") or "error" in row or not row.get("answer"):
                continue
            labelled = labels.get((row["question"], row["answer"]))
            if row["collection"] == "demo" and row.get("answerable") and labelled is None:
                continue  # no reference to label it by
            key = (row["question"], row["collection"], row["answer"])
            if key in seen:
                continue
            seen.add(key)
            check = row.get("answer_check") or {}
            sentences = strip_markers(row["answer"])
            short = row.get("short_answer") if check.get("short_answer_supported") else None
            rows.append({"index": row["index"], "question": row["question"], "collection": row["collection"],
                         "served": f"{short}. {sentences}" if short else sentences,
                         "pieces_text": ([short] if short else []) + passage_sentences(sentences),
                         "cited": sorted(set(markers(row["answer"]))),
                         "right": (bool(row.get("correct")) if row["collection"] == "present"
                                   else bool(labelled)),
                         "recorded_p": check.get("judge_p"), "source": path.name})
    return rows


def report(rows: list[dict], forms: list[str], thresholds: list[float]) -> list[str]:
    from sklearn.metrics import roc_auc_score

    labels = [r["right"] for r in rows]
    right, wrong = sum(labels), len(labels) - sum(labels)
    lines = [f"{len(rows)} served answers: {right} right, {wrong} wrong"]
    for form in forms:
        scores = [r["p"][form] for r in rows]
        auroc = roc_auc_score(labels, scores) if 0 < right < len(labels) else float("nan")
        cells = []
        for t in thresholds:
            kept = sum(1 for r, s in zip(rows, scores) if s >= t and r["right"])
            leaked = sum(1 for r, s in zip(rows, scores) if s >= t and not r["right"])
            cells.append(f"{t:g}: {kept}/{right} right, {leaked}/{wrong} wrong")
        base = form.split(":")[0]  # a pieces form's aggregates share its calls' tokens and time
        tokens = sorted(r["tokens"][base] for r in rows)
        seconds = sorted(r["seconds"][base] for r in rows if base in r.get("seconds", {}))
        timed = f"judge s median {seconds[len(seconds) // 2]:.2f} ({len(seconds)} timed)" if seconds else "not timed"
        lines.append(f"| {form} | AUROC {auroc:.3f} | prompt tokens median {tokens[len(tokens) // 2]} | {timed} | "
                     + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outputs", nargs="+", type=Path, help="answers_dev output files")
    parser.add_argument("--data-dir", type=Path, required=True, help="answers_dev's index (built if missing)")
    parser.add_argument("--forms", default=",".join(FORMS),
                        help=f"of {', '.join(FORMS)}, {', '.join(CUT_FORMS)}, {', '.join(PIECE_FORMS)}, "
                             f"{', '.join(CONTRAST_FORMS)}, {', '.join(RULES_FORMS)}, self_answer")
    parser.add_argument("--thresholds", default="0.3,0.4,0.5,0.6,0.7")
    parser.add_argument("--out", type=Path, help="per-answer P(yes) of each form, as JSON (resumed if present)")
    parser.add_argument("--labels", type=Path, help="hand labels of demo answers (benchmarks/outputs/"
                                                    "demo-answer-labels.json): those answers are replayed too")
    args = parser.parse_args()
    forms = args.forms.split(",")
    thresholds = [float(t) for t in args.thresholds.split(",")]

    from attest_settings import Settings
    from grounding.verifier import build_judge
    from retrieval.dense import get_dense_encoder
    from retrieval.search import Retriever
    from retrieval.store import open_store

    settings = Settings(data_dir=args.data_dir)
    absent, present, _ = load(100, 0)
    ensure_index(args.data_dir, absent, present)
    retriever = Retriever(settings, open_store(settings))
    judge = build_judge(settings)
    encoder = get_dense_encoder()
    labels = ({(x["question"], x["answer"]): x["right"] for x in json.loads(args.labels.read_text())["labels"]}
              if args.labels else None)
    rows = served_rows(args.outputs, labels)
    done = {(r["question"], r["collection"], r["served"]): r for r in
            (json.loads(args.out.read_text()) if args.out and args.out.exists() else [])}
    for row in rows:
        old = done.get((row["question"], row["collection"], row["served"])) or {}
        row["p"], row["tokens"] = old.get("p", {}), old.get("tokens", {})
        if "self_answer" in old:
            row["self_answer"] = old["self_answer"]
        for key in ("seconds", "pieces", "nulls"):
            if key in old:
                row[key] = old[key]
    started = time.perf_counter()
    for n, row in enumerate(rows):
        missing = [f for f in forms if f not in row["p"]]
        if not missing:
            continue
        hits = retriever.search(row["question"], row["collection"], settings.answer_passages).hits
        passages = [Passage.from_hit(i, h) for i, h in enumerate(hits, start=1)]
        passages = [p for p in passages if p.number in row["cited"]] or passages
        read = [p.text for p in passages]
        row.setdefault("seconds", {})
        for form in missing:
            judge.loaded.llama.n_tokens = 0  # each form prefilled in full, as the server's judge meets a new answer
            t = time.perf_counter()
            if form == "self_answer":
                row["p"][form], row["self_answer"], row["tokens"][form] = self_answer(judge, read, row["question"],
                                                                                      row["served"])
            elif form in RULES_FORMS:
                documents = answer_judge_documents(row["question"], row["served"], passages, encoder,
                                                   RULES_FORMS[form])
                pieces = row["pieces_text"] or [row["served"]]
                build = rules_prompt if form == "rules2" else served_prompt
                prime(judge, build(documents, row["question"], pieces[0]))
                t = time.perf_counter()  # from the primed cache
                ps, prefilled = [], 0
                for piece in pieces:
                    ps.append(round(judge.p_yes_of_prompt(build(documents, row["question"], piece)), 4))
                    prefilled += judge.last_call.prefilled_tokens
                row.setdefault("pieces", {})[form] = ps
                row["p"][form] = max(ps)
                row["tokens"][form] = prefilled  # tokens evaluated, all pieces together
            elif form in CONTRAST_FORMS:
                documents = answer_judge_documents(row["question"], row["served"], passages, encoder,
                                                   CONTRAST_FORMS[form])
                pieces = row["pieces_text"] or [row["served"]]
                ps = [judge.p_yes(answer_prompt(documents, row["question"], piece)) for piece in pieces]
                tokens = judge.last_call.prompt_tokens
                nulls = {name: judge.p_yes(answer_prompt(documents, row["question"], text))
                         for name, text in NULL_ANSWERS.items()}
                row.setdefault("pieces", {})[form] = [round(p, 4) for p in ps]
                row.setdefault("nulls", {})[form] = {name: round(p, 4) for name, p in nulls.items()}
                for name, p0 in nulls.items():
                    row["p"][f"{form}:{name}"] = round(_sigmoid(max(_logit(p) for p in ps) - _logit(p0)), 4)
                row["p"][form] = row["p"][f"{form}:na"]
                row["tokens"][form] = tokens
            elif form in PIECE_FORMS:
                documents = answer_judge_documents(row["question"], row["served"], passages, encoder,
                                                   PIECE_FORMS[form])
                pieces = row["pieces_text"] or [row["served"]]
                ps = [round(judge.p_yes(answer_prompt(documents, row["question"], piece)), 4) for piece in pieces]
                row.setdefault("pieces", {})[form] = ps
                for name, combine in PIECE_AGGREGATES.items():
                    row["p"][f"{form}:{name}"] = round(combine(ps), 4)
                row["p"][form] = row["p"][f"{form}:max"]
                row["tokens"][form] = judge.last_call.prompt_tokens
            else:
                if form in CUT_FORMS:
                    documents = answer_judge_documents(row["question"], row["served"], passages, encoder,
                                                       CUT_FORMS[form])
                    prompt = answer_prompt(documents, row["question"], row["served"])
                else:
                    prompt = FORMS[form](read, row["question"], row["served"])
                row["p"][form] = round(judge.p_yes(prompt), 4)
                row["tokens"][form] = judge.last_call.prompt_tokens
            row["seconds"][form] = round(time.perf_counter() - t, 3)
        print(f"{n + 1}/{len(rows)} {time.perf_counter() - started:.0f} s {row['right']} {row['p']}", flush=True)
        if args.out:
            args.out.write_text(json.dumps(rows, indent=1))
    reported = [f for form in forms for f in ([f"{form}:{a}" for a in PIECE_AGGREGATES] if form in PIECE_FORMS
                                              else [f"{form}:{n}" for n in NULL_ANSWERS] if form in CONTRAST_FORMS
                                              else [form])]
    print("\n".join(report(rows, reported, thresholds)))


if __name__ == "__main__":
    main()

"""Training data for a verifier that reads relations, not words (issue 13, deliverable 2). CPU, deterministic.

    python -m grounding.training.make_relations --out build/relations

Every example has the shape of the service's verifier input: (claim, evidence), the evidence being the
``k = 3`` sentences ``grounding.evidence.EvidencePool.select`` picks for the claim from the passages it is
checked against, except that sentences are ranked by content-word overlap (cosine-normalised) plus the
service's bonus for the claim's numbers and names instead of MiniLM cosine similarity (embedding ~60k texts
did not fit the time on 2 shared cores).

Sources and leakage rules:
- BEIR SciFact abstracts (title + text, as the SciFact pair contexts), minus every abstract of a pair in the
  SciFact claim-level dev split (``scifact-dev-split.json``, written here on first run: 30% of the 868 pairs,
  stratified by kind, grouped by claim);
- HotpotQA dev questions 50-99 (file order) and their ten paragraphs; questions 0-49 are the end-to-end
  benchmark's held-out half: none of their questions, answers or paragraphs (by title) is used;
- the demo corpus's Markdown and text files (data/demo), cut into paragraphs.

Kinds (label 1 = supported, 0 = unsupported):
- ``sent`` (1): a sentence of the passage; ``clause`` (1): its first clause, or the sentence without a
  parenthesis; ``fuse`` (1): two sentences of one passage joined with "and";
- ``cloze`` (1): a question-shaped claim made from a sentence ("<sentence with a name/number/date replaced by
  'what'>? <it>."), the shape ``grounding.claims.in_context`` gives a short answer; ``cloze_wrong`` (0): the
  same question with another name/number/date of the same type from the passage or a topic-near one;
- ``qa`` (1): a HotpotQA question + its answer ("<question> <answer>.") against the ten paragraphs;
  ``qa_wrong`` (0): + another entity of the same type from its paragraphs (often the distractors');
  ``qa_absent`` (0): + the right answer, checked against the eight distractor paragraphs only;
- ``swap_passage`` (0): a name, number or date of the sentence replaced by another of the same type from
  the same passage (the right words in the wrong relation); ``swap_near`` (0): replaced from a topic-near
  passage (HotpotQA: the question's other paragraphs; SciFact and demo: a BM25 neighbour);
- ``swap_within`` (0): two names/numbers of the same type in one sentence exchanged (subject <-> object);
- ``negate``, ``antonym`` (0): negation flipped, a direction word swapped (grounding/training/prepare.py);
- ``neighbour`` (0): a sentence (or fused pair) checked against a topic-near passage that lacks it, with
  its one best-matching sentence removed if it states the claim word for word.

A fixed composition dev split: 8% of the source passages (by a hash of their id), so every example made from
a passage sits on one side only; its examples are written to ``dev.jsonl``, never trained on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from grounding.evidence import passage_sentences
from grounding.training.prepare import negate, swap_direction

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
SEED = 2026
DEV_SPLIT_FILE = Path(__file__).resolve().parent / "scifact-dev-split.json"
DEV_SHARE = 0.30
K = 3

_MONTH = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
_DATE = re.compile(rf"\b(?:\d{{1,2}} {_MONTH}(?: \d{{4}})?|{_MONTH} \d{{1,2}}(?:, \d{{4}})?|{_MONTH} \d{{4}})\b")
_YEAR = re.compile(r"(?<![\w.,])(1[5-9]\d\d|20[0-4]\d)(?![\w.,%])")
_PCT = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?%")
_NUM = re.compile(r"(?<![\w.,])\d+(?:[.,]\d+)*(?![\w%])")
_CODE = re.compile(r"(?<![\w-])(?=[\w-]*[A-Z])(?=[\w-]*\d)[A-Za-z][\w-]*[A-Za-z0-9+]|(?<![\w-])[A-Z]{2,}[a-z]?(?![\w-])")
_NAME = re.compile(r"(?<![\w'-])[A-Z][a-z][\w'\-]*(?:\s+(?:(?:of|the|de|von|van|and|&)\s+)?[A-Z][\w'\-]+)*")
_SKIP_NAMES = {"The", "This", "These", "Those", "In", "We", "Our", "It", "Its", "A", "An", "However", "Here",
               "To", "For", "Of", "On", "At", "As", "By", "With", "From", "After", "Before", "During", "When",
               "While", "Although", "Both", "All", "Each", "Some", "Most", "Many", "There", "They", "He", "She",
               "His", "Her", "Their", "If", "And", "But", "Or", "No", "Not", "One", "Two", "Three", "Results",
               "Conclusions", "Methods", "Background", "Objective", "Objectives", "Design", "Setting", "Using",
               "Among", "Compared", "Patients", "Participants", "Data", "Although", "Because", "Also", "Thus",
               "Moreover", "Furthermore", "Finally", "First", "Second", "Third", "Overall", "Together"}


def entities(text: str) -> list[tuple[int, int, str, str]]:
    """(start, end, type, text) of dates, years, percentages, numbers, codes and capitalised names; no two
    overlap (earlier patterns win)."""
    found: list[tuple[int, int, str, str]] = []
    taken = np.zeros(len(text) + 1, dtype=bool)
    for kind, pattern in (("date", _DATE), ("year", _YEAR), ("pct", _PCT), ("code", _CODE), ("num", _NUM),
                          ("name", _NAME)):
        for m in pattern.finditer(text):
            s, e = m.span()
            value = m.group().strip()
            if not value or taken[s:e].any():
                continue
            if kind == "name":
                first = value.split()[0]
                if s == 0 and " " not in value:
                    continue  # a capitalised first word is not a name by itself
                if value in _SKIP_NAMES or (first in _SKIP_NAMES and " " not in value):
                    continue
                if first in _SKIP_NAMES:
                    s += len(first) + 1
                    value = value[len(first) + 1:]
            if kind == "num" and len(value) > 12:
                continue
            if kind == "code" and value.isupper() and value.isalpha() and len(value) >= 6:
                continue  # an abstract's section header (RESULTS, CONCLUSIONS), not a name
            found.append((s, s + len(value), kind, value))
            taken[s:s + len(value)] = True
    return sorted(found)


def replace_span(text: str, span, new: str) -> str:
    return text[: span[0]] + new + text[span[1]:]


def _norm(s: str) -> str:
    return " ".join(s.lower().split())


def words(s: str) -> int:
    return len(s.split())


def first_clause(sentence: str) -> str | None:
    """A shorter claim the sentence still states: the part before ", which"/"; "/", and", or without (...)."""
    no_paren = re.sub(r"\s*\([^()]*\)", "", sentence)
    if no_paren != sentence and words(no_paren) >= 6:
        return no_paren
    for sep in ("; ", ", which ", ", while ", ", and ", ", but ", ", whereas "):
        if sep in sentence:
            head = sentence.split(sep, 1)[0].rstrip(",;") + "."
            if words(head) >= 6:
                return head
    return None


def fuse(a: str, b: str) -> str:
    a = a.rstrip(" .;")
    b = b.strip()
    first = b.split()[0] if b else ""
    if first in _SKIP_NAMES:
        b = b[0].lower() + b[1:]
    return f"{a}, and {b}"


def _wh(kind: str) -> str:
    return {"date": "what date", "year": "what year", "pct": "what percentage", "num": "how many",
            "code": "what", "name": "what"}[kind]


class Passage_:
    """A source passage: id, group (dev split unit), its sentences, its topic-near passages."""

    def __init__(self, pid: str, source: str, text: str):
        self.pid, self.source, self.text = pid, source, text
        self.sentences = [s for s in passage_sentences(text)]
        self.near: list[str] = []

    def ents(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for s in self.sentences:
            for _, _, kind, value in entities(s):
                if value not in out[kind]:
                    out[kind].append(value)
        return out


def load_scifact_dev_split(pairs_path: Path) -> dict:
    rows = [json.loads(l) for l in pairs_path.read_text().splitlines() if l.strip()]
    if DEV_SPLIT_FILE.exists():
        return json.loads(DEV_SPLIT_FILE.read_text())
    from sklearn.model_selection import StratifiedGroupKFold

    groups = [r["id"].split("-")[2] for r in rows]
    kinds = [r["kind"] for r in rows]
    # 10 folds stratified by kind and grouped by claim; 3 of them (30%) form the dev split.
    splitter = StratifiedGroupKFold(n_splits=10, shuffle=True, random_state=SEED)
    dev = set()
    for k, (_, test) in enumerate(splitter.split(rows, kinds, groups)):
        if k < 3:
            dev.update(rows[i]["id"] for i in test)
    split = {"note": "SciFact claim-level dev split for issue 13: 30% of scifact-claims-train.jsonl, stratified by "
                     "kind, grouped by claim (StratifiedGroupKFold 10 folds, seed 2026, folds 0-2). Never train "
                     "on these pairs or on perturbations of their abstracts.",
             "dev": sorted(dev), "train": sorted(r["id"] for r in rows if r["id"] not in dev),
             "counts": {kind: {"dev": sum(1 for r in rows if r["kind"] == kind and r["id"] in dev),
                               "train": sum(1 for r in rows if r["kind"] == kind and r["id"] not in dev)}
                        for kind in sorted(set(kinds))}}
    DEV_SPLIT_FILE.write_text(json.dumps(split, indent=1) + "\n")
    return split


def load_passages(args, rng) -> tuple[dict[str, Passage_], dict]:
    pairs = [json.loads(l) for l in args.pairs.read_text().splitlines() if l.strip()]
    split = load_scifact_dev_split(args.pairs)
    dev_ids = set(split["dev"])
    dev_docs = {r["id"].split("-")[3] for r in pairs if r["id"] in dev_ids}
    dev_contexts = {_norm(r["context"])[:200] for r in pairs if r["id"] in dev_ids}
    passages: dict[str, Passage_] = {}
    facts = {"scifact_dev_docs_excluded": len(dev_docs)}

    # SciFact abstracts (BEIR), minus the dev split's.
    corpus = [json.loads(l) for l in (SHARED / "beir-scifact" / "corpus.jsonl").read_text().splitlines() if l.strip()]
    excluded = 0
    eligible = []
    for d in corpus:
        text = f"{d['title']}. {d['text']}" if d.get("title") else d["text"]
        if d["_id"] in dev_docs or _norm(text)[:200] in dev_contexts:
            excluded += 1
            continue
        eligible.append((d["_id"], text))
    facts["scifact_abstracts_excluded"] = excluded
    rng.shuffle(eligible)
    for did, text in eligible[: args.scifact_abstracts]:
        passages[f"sf:{did}"] = Passage_(f"sf:{did}", "scifact", text)

    # HotpotQA 50-99 paragraphs (never 0-49's: by title).
    hot = [json.loads(l) for l in (SHARED / "qa" / "hotpotqa-dev-100.jsonl").read_text().splitlines() if l.strip()]
    held_titles = {title for q in hot[:50] for title, _ in q["context"]}
    held_answers = {_norm(q["answer"]) for q in hot[:50]}
    questions = []
    for qi, q in enumerate(hot[50:], start=50):
        pids = []
        for title, sents in q["context"]:
            if title in held_titles:
                continue
            pid = f"hp:{qi}:{title}"
            text = " ".join(s.strip() for s in sents)
            passages[pid] = Passage_(pid, "hotpot", f"{title}. {text}" if not text.startswith(title) else text)
            pids.append(pid)
        for pid in pids:
            passages[pid].near = [p for p in pids if p != pid]
        gold = {t for t, *_ in q["supporting_facts"]}
        questions.append({"qi": qi, "question": q["question"], "answer": q["answer"],
                          "gold": [f"hp:{qi}:{t}" for t in gold if f"hp:{qi}:{t}" in passages],
                          "others": [p for p in pids if p.split(":", 2)[2] not in gold]})
    facts["hotpot_titles_excluded"] = len(held_titles)
    facts["hotpot_questions_used"] = "50-99"
    facts["_held_answers"] = held_answers

    # Demo corpus: Markdown and text files, one passage per paragraph block of >= 2 sentences.
    for path in sorted((ROOT / "data" / "demo").rglob("*")):
        if path.suffix not in (".md", ".txt") or path.name == "README.md":
            continue
        blocks = [b.strip() for b in re.split(r"\n\s*\n", path.read_text(errors="ignore")) if b.strip()]
        buf, n = [], 0
        for b in blocks:
            buf.append(b)
            if sum(words(x) for x in buf) >= 60:
                pid = f"demo:{path.relative_to(ROOT / 'data' / 'demo')}:{n}"
                passages[pid] = Passage_(pid, "demo", "\n\n".join(buf))
                buf, n = [], n + 1
        if buf:
            pid = f"demo:{path.relative_to(ROOT / 'data' / 'demo')}:{n}"
            passages[pid] = Passage_(pid, "demo", "\n\n".join(buf))
    return passages, {"facts": facts, "questions": questions}


def bm25_neighbours(passages: dict[str, Passage_], ids: list[str], n: int = 3) -> None:
    from rank_bm25 import BM25Okapi

    from grounding.checks import content_words

    docs = [sorted(content_words(passages[i].text)) for i in ids]
    bm25 = BM25Okapi(docs)
    for i, pid in enumerate(ids):
        query = sorted(content_words(" ".join(passages[pid].sentences[:2])))[:30]
        scores = bm25.get_scores(query)
        scores[i] = -1e9
        top = np.argsort(-scores)[:n]
        passages[pid].near = [ids[j] for j in top]


def is_dev(pid: str, share: float) -> bool:
    h = int(hashlib.sha1(pid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return h < share


def make_examples(passages: dict[str, Passage_], questions: list[dict], rng: random.Random, held_answers) -> list[dict]:
    """Examples with their passages (evidence is selected later, in one embedding pass)."""
    out: list[dict] = []

    def add(kind, label, claim, pool, pid, extra=None):
        claim = " ".join(claim.split())
        if words(claim) < 4 or words(claim) > 70:
            return
        out.append({"kind": kind, "label": label, "claim": claim, "pool": pool, "group": pid, **(extra or {})})

    for pid, p in passages.items():
        sents = [s for s in p.sentences if 6 <= words(s) <= 60]
        if not sents:
            continue
        ents_here = p.ents()
        near_ents: dict[str, list[str]] = defaultdict(list)
        for q in p.near:
            for kind, vals in passages[q].ents().items():
                near_ents[kind] += [v for v in vals if v not in near_ents[kind]]
        own = [pid]
        # A few sentences per passage (more for HotpotQA/demo, which are fewer).
        per = 2 if p.source == "scifact" else 4
        chosen = rng.sample(sents, min(per, len(sents)))
        for s in chosen:
            ents_s = entities(s)
            r = rng.random()
            # --- supported
            if r < 0.35:
                add("sent", 1, s, own, pid)
            else:
                c = first_clause(s)
                if c:
                    add("clause", 1, c, own, pid)
                else:
                    add("sent", 1, s, own, pid)
            if ents_s and rng.random() < 0.6:
                s0, e0, kind, value = rng.choice(ents_s)
                q_text = replace_span(s, (s0, e0), _wh(kind)).rstrip(" .;") + "?"
                add("cloze", 1, f"{q_text} {value}.", own, pid)
                # wrong answer of the same type: from this passage or a topic-near one
                same = [v for v in ents_here.get(kind, []) if v != value and _norm(v) not in _norm(s)]
                near = [v for v in near_ents.get(kind, []) if v != value and _norm(v) not in _norm(p.text)]
                options = same + near
                if options:
                    wrong = rng.choice(options)
                    add("cloze_wrong", 0, f"{q_text} {wrong}.", own, pid, {"pool_near": bool(wrong in near)})
            # --- unsupported
            if ents_s:
                s0, e0, kind, value = rng.choice(ents_s)
                same = [v for v in ents_here.get(kind, []) if v != value and _norm(v) not in _norm(s)]
                near = [v for v in near_ents.get(kind, []) if v != value and _norm(v) not in _norm(p.text)]
                if same and (not near or rng.random() < 0.6):
                    add("swap_passage", 0, replace_span(s, (s0, e0), rng.choice(same)), own, pid)
                elif near:
                    add("swap_near", 0, replace_span(s, (s0, e0), rng.choice(near)), own, pid)
                by_kind = defaultdict(list)
                for e in ents_s:
                    by_kind[e[2]].append(e)
                pairs = [v for v in by_kind.values() if len({x[3] for x in v}) >= 2]
                if pairs and rng.random() < 0.7:
                    group = rng.choice(pairs)
                    a, b = rng.sample(group, 2)
                    if a[3] != b[3]:
                        a, b = sorted((a, b))
                        swapped = s[: a[0]] + b[3] + s[a[1]: b[0]] + a[3] + s[b[1]:]
                        add("swap_within", 0, swapped, own, pid)
            r = rng.random()
            if r < 0.3:
                t = negate(s)
                if t and t != s:
                    add("negate", 0, t, own, pid)
            elif r < 0.55:
                t = swap_direction(s)
                if t and t != s:
                    add("antonym", 0, t, own, pid)
            if p.near and rng.random() < 0.5:
                add("neighbour", 0, s, [rng.choice(p.near)], pid, {"strip": True})
        if len(sents) >= 2 and rng.random() < 0.5:
            i = rng.randrange(len(sents) - 1)
            j = i + 1 if rng.random() < 0.6 else rng.randrange(len(sents))
            if j != i and words(sents[i]) + words(sents[j]) <= 60:
                add("fuse", 1, fuse(sents[i], sents[j]), own, pid)

    # HotpotQA questions 50-99: the answer as the service checks a short answer.
    for q in questions:
        if not q["gold"] or _norm(q["answer"]) in held_answers:
            continue
        allp = q["gold"] + q["others"]
        group = q["gold"][0]  # grouped with the gold paragraph's examples (same dev side)
        question = q["question"].strip()
        if question[-1] not in "?.!":
            question += "?"
        answer = q["answer"].strip().rstrip(".")
        add("qa", 1, f"{question} {answer}.", allp, group)
        whole = [e for e in entities(answer) if e[1] - e[0] >= len(answer) - 2]
        kind = whole[0][2] if whole else "name"
        cands = []
        for pid in allp:
            for v in passages[pid].ents().get(kind, []):
                if _norm(v) != _norm(answer) and _norm(answer) not in _norm(v) and v not in cands \
                        and _norm(v) not in _norm(question):
                    cands.append(v)
        if answer.lower() in ("yes", "no"):
            cands = ["no" if answer.lower() == "yes" else "yes"]
        for wrong in rng.sample(cands, min(3, len(cands))):
            add("qa_wrong", 0, f"{question} {wrong}.", allp, group)
        if q["others"]:
            add("qa_absent", 0, f"{question} {answer}.", q["others"], group, {"strip_answer": answer})
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=SHARED / "grounding" / "scifact-claims-train.jsonl")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "relations")
    parser.add_argument("--scifact-abstracts", type=int, default=2600)
    parser.add_argument("--dev-share", type=float, default=0.08)
    args = parser.parse_args(argv)

    import time

    started = time.time()
    rng = random.Random(SEED)
    passages, extra = load_passages(args, rng)
    facts = extra["facts"]
    held_answers = facts.pop("_held_answers")
    sf_ids = [p for p in passages if p.startswith("sf:")]
    demo_ids = [p for p in passages if p.startswith("demo:")]
    bm25_neighbours(passages, sf_ids)
    bm25_neighbours(passages, demo_ids)
    print(f"{len(passages)} passages ({time.time() - started:.0f} s)", flush=True)
    examples = make_examples(passages, extra["questions"], rng, held_answers)
    print(f"{len(examples)} examples before evidence ({time.time() - started:.0f} s)", flush=True)

    # Evidence: the service's selection (EvidencePool.select: top k, cited rules aside, in reading order) with
    # a lexical similarity in place of MiniLM cosine (content-word overlap, cosine-normalised) plus the same
    # bonus for the claim's numbers and names: embedding ~60k texts did not fit on 2 shared cores.
    from grounding.checks import content_words, numbers_in, salient_tokens

    words_of = {}

    def cw(text):
        if text not in words_of:
            words_of[text] = content_words(text)
        return words_of[text]

    for e in examples:
        claim_words = cw(e["claim"])
        keys = numbers_in(e["claim"]) | salient_tokens(e["claim"])
        cands = []
        for number, pid in enumerate(e["pool"], start=1):
            for i, text in enumerate(passages[pid].sentences):
                if e.get("strip") and _norm(text) == _norm(e["claim"]):
                    continue
                if e.get("strip_answer") and _norm(e["strip_answer"]) in _norm(text):
                    continue
                sw = cw(text)
                sim = len(claim_words & sw) / max(1.0, (len(claim_words) * len(sw)) ** 0.5)
                if keys:
                    low = text.lower()
                    sim += 0.15 * sum(1 for k in keys if k in low) / len(keys)
                cands.append((sim, number, i, text))
        top = sorted(cands, key=lambda c: -c[0])[:K]
        top.sort(key=lambda c: (c[1], c[2]))
        e["evidence"] = " ".join(c[3] for c in top)
    examples = [e for e in examples if e["evidence"]]
    # A negative whose claim the evidence states word for word is not one (a rare coincidence): drop it.
    examples = [e for e in examples if e["label"] == 1 or _norm(e["claim"].rstrip(".")) not in _norm(e["evidence"])]

    args.out.mkdir(parents=True, exist_ok=True)
    train, dev = [], []
    for e in examples:
        row = {"kind": e["kind"], "label": e["label"], "claim": e["claim"], "evidence": e["evidence"],
               "group": e["group"], "source": e["group"].split(":")[0]}
        (dev if is_dev(e["group"], args.dev_share) else train).append(row)
    rng.shuffle(train)
    for name, rows in (("train", train), ("dev", dev)):
        with open(args.out / f"{name}.jsonl", "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    summary = {"seed": SEED, "seconds": round(time.time() - started, 1), "passages": Counter(p.source for p in passages.values()),
               "train": dict(Counter(r["kind"] for r in train)), "dev": dict(Counter(r["kind"] for r in dev)),
               "train_by_source": dict(Counter(r["source"] for r in train)),
               "dev_by_source": dict(Counter(r["source"] for r in dev)),
               "train_labels": dict(Counter(r["label"] for r in train)), "dev_labels": dict(Counter(r["label"] for r in dev)),
               **facts}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()

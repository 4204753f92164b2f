"""Prepare the SciFact claim/context pairs for training and cross-validating the claim verifier (CPU).

    python -m grounding.training.prepare --pairs ../shared/data/grounding/scifact-claims-train.jsonl \\
        --out build/gpu

Writes ``<out>/pairs.jsonl`` (one row per pair: its fold, the evidence the service would select for it at
k = 2, 3 and 5 sentences, and the deterministic signals) and ``<out>/augment.jsonl`` (rule-based
perturbations, FactCC-style, each tied to the fold of the pair it came from, so that a fold's test pairs
never leak into its training set through their perturbations):
- ``negate``: a supported claim with its negation flipped -> unsupported;
- ``direction``: a direction word swapped (increases -> decreases) -> unsupported;
- ``number``: a number changed -> unsupported;
- ``other``: a claim with the best-matching sentences of another abstract of the same fold -> unsupported.

Folds: 5, stratified by kind (SUPPORT / CONTRADICT / NOT_ENOUGH_INFO) and grouped by claim, so one claim
never sits on both sides of a split.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

import numpy as np

from grounding.checks import deterministic_signals
from grounding.evidence import EvidencePool, EvidenceSentence, Passage, passage_sentences

KS = (2, 3, 5)
FOLDS = 5
SEED = 13

_AUX = re.compile(r"\b(is|are|was|were|can|could|does|do|did|has|have|had|will|would|should|may|might)\b")
_NOT_AFTER_AUX = re.compile(r"\b(is|are|was|were|can|could|does|do|did|has|have|had|will|would|should|may|might)"
                            r" not\b")
_VERB_S = re.compile(r"\b([a-z]+(?:es|s))\b")
_SWAPS = {
    "increases": "decreases", "increase": "decrease", "increased": "decreased", "increasing": "decreasing",
    "decreases": "increases", "decrease": "increase", "decreased": "increased", "decreasing": "increasing",
    "reduces": "increases", "reduce": "increase", "reduced": "increased", "reducing": "increasing",
    "higher": "lower", "lower": "higher", "more": "less", "less": "more", "fewer": "more",
    "positive": "negative", "negative": "positive", "promotes": "inhibits", "inhibits": "promotes",
    "promote": "inhibit", "inhibit": "promote", "enhances": "impairs", "impairs": "enhances",
    "improves": "worsens", "worsens": "improves", "greater": "smaller", "smaller": "greater",
    "larger": "smaller", "activates": "inhibits", "suppresses": "promotes", "upregulates": "downregulates",
    "downregulates": "upregulates", "induces": "inhibits", "prevents": "causes", "causes": "prevents",
    "high": "low", "low": "high", "elevated": "reduced", "associated": "unassociated", "risk": "protection",
}


def negate(claim: str) -> str | None:
    if _NOT_AFTER_AUX.search(claim):
        return _NOT_AFTER_AUX.sub(lambda m: m.group(1), claim, count=1)
    if re.search(r"\bno\b", claim):
        return re.sub(r"\bno\b", "some", claim, count=1)
    if re.search(r"\bnot\b", claim):
        return re.sub(r"\bnot\s+", "", claim, count=1)
    if _AUX.search(claim):
        return _AUX.sub(lambda m: m.group(1) + " not", claim, count=1)
    words = claim.split()
    for i, w in enumerate(words[1:], start=1):  # "X reduces Y" -> "X does not reduce Y"
        if _VERB_S.fullmatch(w) and len(w) > 4 and not w.endswith("ss") and w.lower() not in ("cells", "levels"):
            base = w[:-2] if w.endswith(("ches", "shes", "sses", "xes")) else w[:-1]
            return " ".join(words[:i] + ["does", "not", base] + words[i + 1:])
    return None


def swap_direction(claim: str) -> str | None:
    words = claim.split()
    for i, w in enumerate(words):
        core = w.strip(".,;:()").lower()
        if core in _SWAPS:
            new = _SWAPS[core]
            if w[0].isupper():
                new = new.capitalize()
            words[i] = w.replace(w.strip(".,;:()"), new)
            return " ".join(words)
    return None


def change_number(claim: str, rng: random.Random) -> str | None:
    matches = list(re.finditer(r"(?<![\w.])\d+(?:\.\d+)?", claim))
    if not matches:
        return None
    m = rng.choice(matches)
    value = float(m.group())
    options = [value * 2, value + 1, max(value - 1, 0) if value > 1 else value + 3, value * 10]
    new = rng.choice([o for o in options if o != value])
    text = str(int(new)) if new == int(new) else f"{new:g}"
    return claim[: m.start()] + text + claim[m.end():]


def folds_for(rows: list[dict]) -> list[int]:
    from sklearn.model_selection import StratifiedGroupKFold

    groups = [r["id"].split("-")[2] for r in rows]
    kinds = [r["kind"] for r in rows]
    splitter = StratifiedGroupKFold(n_splits=FOLDS, shuffle=True, random_state=SEED)
    fold = [0] * len(rows)
    for k, (_, test) in enumerate(splitter.split(rows, kinds, groups)):
        for i in test:
            fold[i] = k
    return fold


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=Path("../shared/data/grounding/scifact-claims-train.jsonl"))
    parser.add_argument("--out", type=Path, default=Path("build/gpu"))
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args(argv)

    from retrieval.dense import get_dense_encoder

    rows = [json.loads(line) for line in args.pairs.read_text().splitlines() if line.strip()]
    if args.limit:
        rows = rows[: args.limit]
    fold = folds_for(rows)
    encoder = get_dense_encoder()
    # One encode call for every claim and context sentence (length-sorted batches inside): much faster than
    # one call per context.
    per_context = [[EvidenceSentence(1, r["id"], i, text) for i, text in enumerate(passage_sentences(r["context"]))]
                   for r in rows]
    texts = [r["claim"] for r in rows] + [s.text for sentences in per_context for s in sentences]
    print(f"embedding {len(texts)} texts", flush=True)
    vectors = np.asarray(encoder.encode(texts, batch_size=64, threads=2), dtype=np.float32)
    claim_vectors, offset = vectors[: len(rows)], len(rows)
    pools = []
    for r, sentences in zip(rows, per_context):
        pools.append(EvidencePool([Passage(1, r["id"], r["context"])], sentences, vectors[offset:offset + len(sentences)]))
        offset += len(sentences)

    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    with open(args.out / "pairs.jsonl", "w") as out:
        for i, r in enumerate(rows):
            ev = {k: pools[i].select(r["claim"], claim_vectors[i], k=k) for k in KS}
            sims = sorted((s.similarity for s in ev[5].sentences), reverse=True)
            signals = deterministic_signals(r["claim"], [s.text for s in ev[3].sentences], r["context"])
            signals["sim_max"] = sims[0] if sims else 0.0
            signals["sim_mean3"] = float(np.mean(sims[:3])) if sims else 0.0
            out.write(json.dumps({
                "id": r["id"], "claim": r["claim"], "label": int(r["label"] == "supported"), "kind": r["kind"],
                "fold": fold[i], "context": r["context"],
                "evidence": {str(k): ev[k].text for k in KS}, "signals": signals,
            }) + "\n")

    augmented = 0
    with open(args.out / "augment.jsonl", "w") as out:
        by_fold: dict[int, list[int]] = {}
        for i, f in enumerate(fold):
            by_fold.setdefault(f, []).append(i)
        for i, r in enumerate(rows):
            ev3 = pools[i].select(r["claim"], claim_vectors[i], k=3).text
            made = []
            if r["label"] == "supported":
                for kind, text in (("negate", negate(r["claim"])), ("direction", swap_direction(r["claim"])),
                                   ("number", change_number(r["claim"], rng))):
                    if text and text != r["claim"]:
                        made.append((kind, text, ev3))
            # Another abstract of the same fold: its sentences closest to this claim (hard, topical negatives).
            doc = r["id"].split("-")[3]
            others = [j for j in by_fold[fold[i]] if j != i and rows[j]["id"].split("-")[3] != doc
                      and rows[j]["claim"] != r["claim"]]
            if others:
                j = max(rng.sample(others, min(20, len(others))),
                        key=lambda j: float((pools[j].vectors @ claim_vectors[i]).max()))
                made.append(("other", r["claim"], pools[j].select(r["claim"], claim_vectors[i], k=3).text))
            for kind, text, evidence in made:
                out.write(json.dumps({"src": r["id"], "fold": fold[i], "claim": text, "evidence": evidence,
                                      "label": 0, "aug": kind}) + "\n")
                augmented += 1
    print(f"wrote {len(rows)} pairs and {augmented} perturbations to {args.out}")


if __name__ == "__main__":
    main()

"""Per-case scores for golden-set runs: criteria, not exact strings."""

from __future__ import annotations

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_DECLINE = re.compile(
    r"(documents?|sources?|passages?|context) (do|does) not (say|mention|contain|state|specify|provide)"
    r"|not (stated|mentioned|specified|provided|covered) in the (documents?|sources?|passages?)"
    r"|no information|cannot (be )?(answer|found|determine)|can't answer|unable to answer|i don'?t know",
    re.IGNORECASE,
)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def is_decline(text: str) -> bool:
    """Whether an answer declines (says the documents do not say), rather than answering."""
    return not text.strip() or bool(_DECLINE.search(text))


def _squash(text: str) -> str:
    return " ".join(text.split()).lower()


def citation_scores(cited: list[dict], reference_doc_ids: list[str], reference_passages: list[str]) -> tuple[float, float]:
    """Precision: share of citations that point at a reference document (or contain a reference passage).
    Recall: share of reference documents that some citation points at. Citations: {doc_id, text|quote}."""
    if not cited:
        return (0.0, 0.0) if reference_doc_ids else (1.0, 1.0)
    refs = set(reference_doc_ids)
    passages = [_squash(p) for p in reference_passages]

    def relevant(c: dict) -> bool:
        body = _squash(c.get("text") or c.get("quote") or "")
        return c.get("doc_id") in refs or any(p and p in body for p in passages)

    precision = sum(relevant(c) for c in cited) / len(cited)
    recall = len(refs & {c.get("doc_id") for c in cited}) / len(refs) if refs else 1.0
    return precision, recall

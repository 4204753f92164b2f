"""Reviewers' decisions as data: golden cases and labelled claim/evidence pairs.

``golden_cases(items)``: one case per decided item, in the golden-set format ``attest eval golden`` reads
(evaluation/golden.py, data/demo/golden.jsonl): ``id``, ``question``, ``reference_answer`` (the approved or
corrected answer without its [n] marks), ``answerable``, ``doc_ids`` (the documents it cites), ``passages``
(the cited evidence sentences, as they stand in those documents), ``kind`` ("reviewed"). A rejected item
becomes a case only when the reviewer marked the question unanswerable from the documents (then
``answerable`` is false); a plain rejection says the answer was wrong, not what the right one is.

``claim_pairs(items)``: labelled (claim, context) rows in the format the verifier's training reads
(``grounding.training.prepare --pairs``: ``id``, ``claim``, ``context``, ``label`` supported|unsupported,
``kind`` SUPPORT|NOT_ENOUGH_INFO), plus ``source``, ``item_id``, ``action`` for provenance. ``context`` is the
text of the passages the claim was checked against. Labels:
- approved as it was: every claim of the draft is supported (a person vouched for the answer);
- edited: every claim of the verified correction is supported; claims of the draft the checks failed and the
  reviewer did not keep word for word are unsupported;
- rejected: claims of the draft the checks failed are unsupported (confirmed); claims the checks passed are
  left out (the person rejected the answer, not necessarily each claim).
Ids are ``review-<kind>-<item hex>-<claim n>``: ``prepare`` groups folds by the third part, so every claim of
one item stays in one fold.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable

_MARKS = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")


def _plain(text: str) -> str:
    return " ".join(_MARKS.sub("", text or "").split())


def _citations(item: dict) -> list[dict]:
    """The decided answer's citations (chunk, document, quote)."""
    if item["status"] == "edited":
        verification = _final_decision(item).get("verification") or {}
        sentences = verification.get("sentences") or []
    else:
        sentences = item["payload"]["draft"].get("sentences") or []
    return [c for s in sentences for c in s.get("citations", [])]


def _final_decision(item: dict) -> dict:
    for decision in reversed(item["decisions"]):
        if decision["action"] == item["status"] and (item["status"] != "edited"
                                                     or decision["text"] == item["final_text"]):
            return decision
    return item["decisions"][-1] if item["decisions"] else {}


def _supporting_spans(claims: list[dict]) -> list[str]:
    spans = []
    for claim in claims:
        if claim.get("verdict") != "supported":
            continue
        supporting = set(claim.get("supporting") or claim.get("evidence") or [])
        for span in claim.get("evidence_spans") or []:
            if span["chunk_id"] in supporting and span["text"] not in spans:
                spans.append(span["text"])
    return spans


def golden_cases(items: Iterable[dict]) -> list[dict]:
    cases = []
    for item in items:
        base = {"id": f"review-{item['id']}", "question": item["question"], "kind": "reviewed",
                "review": {"item_id": item["id"], "action": item["status"], "decided_at": item["decided_at"],
                           "tenant": item["tenant"], "collection": item["collection"]}}
        if item["status"] == "rejected":
            if any(d["unanswerable"] for d in item["decisions"] if d["action"] == "rejected"):
                cases.append({**base, "reference_answer": "", "answerable": False, "doc_ids": [], "passages": []})
            continue
        citations = _citations(item)
        if item["status"] == "edited":
            claims = (_final_decision(item).get("verification") or {}).get("claims") or []
        else:
            claims = item["payload"]["response"].get("claims") or []
        passages = _supporting_spans(claims) or list(dict.fromkeys(c["quote"] for c in citations if c.get("quote")))
        cases.append({**base, "reference_answer": _plain(item["final_text"]), "answerable": True,
                      "doc_ids": list(dict.fromkeys(c["doc_id"] for c in citations)), "passages": passages})
    return cases


def _context(claim: dict, sources: list[dict]) -> str:
    """The text of the passages the claim's verdict was based on (all sources when it names none)."""
    ids = list(dict.fromkeys((claim.get("evidence") or []) + (claim.get("citations") or [])))
    chosen = [s["text"] for s in sources if s["chunk_id"] in ids] or [s["text"] for s in sources]
    return "\n\n".join(chosen)


def claim_pairs(items: Iterable[dict]) -> list[dict]:
    rows = []
    for item in items:
        sources = item["payload"]["response"].get("sources") or []
        draft_claims = item["payload"]["response"].get("claims") or []
        labelled: list[tuple[dict, bool]] = []
        if item["status"] == "approved":
            labelled = [(c, True) for c in draft_claims]
        elif item["status"] == "edited":
            decision = _final_decision(item)
            kept = _plain(decision.get("text") or "")
            edit_claims = (decision.get("verification") or {}).get("claims") or []
            labelled = [(c, True) for c in edit_claims]
            labelled += [(c, False) for c in draft_claims if c.get("verdict") != "supported" and c["text"] not in kept]
        elif item["status"] == "rejected":
            labelled = [(c, False) for c in draft_claims if c.get("verdict") != "supported"]
        hex_id = item["id"].removeprefix("rev_")
        for n, (claim, supported) in enumerate(labelled):
            rows.append({"id": f"review-{item['kind'].replace('_', '')}-{hex_id}-{n}", "claim": claim["text"],
                         "context": _context(claim, sources), "label": "supported" if supported else "unsupported",
                         "kind": "SUPPORT" if supported else "NOT_ENOUGH_INFO", "source": "review",
                         "item_id": item["id"], "action": item["status"]})
    return rows


def write_jsonl(rows: list[dict], path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def pairs_path_for(golden_path: Path) -> Path:
    """Where the pairs go beside ``--out FILE``: FILE's name with ``-claims`` before the suffix."""
    golden_path = Path(golden_path)
    return golden_path.with_name(golden_path.stem + "-claims" + (golden_path.suffix or ".jsonl"))

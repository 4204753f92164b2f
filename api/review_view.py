"""What the reviewer page shows of an item: each claim's verdict with the reasons it failed in words, its
evidence marked where it lies in its source, and the draft's sentences marked by how their claims fared.

Everything here returns plain data (strings, numbers, lists of text segments with a class): the templates
(api/templates/review/) escape every string they print, so no HTML is ever built from document text or
model output in Python.

    view = item_view(item_out(item, edits).model_dump(mode="json"), mine=latest_edit)
"""

from __future__ import annotations

from grounding.checks import missing_numbers, missing_terms

CONTEXT_CHARS = 160  # of source text shown around an evidence sentence in a claim's card

# Each veto in words a reviewer reads at a glance (grounding/checks.py VETOES); {found} is what it found.
VETO_WORDS = {
    "number_absent_from_sources": "States a number no source contains{found}.",
    "quantity_of_another_kind": "Measures something in units of another kind (e.g. a weight in pixels).",
    "currency_absent_from_sources": "Gives an amount in a currency the sources never use.",
    "number_stated_as_another_quantity": "Uses a number the sources give only as another kind of quantity.",
    "term_absent_from_sources": "Names something no source mentions{found}.",
    "restates_question": "Only says the question back: it answers nothing.",
    "incomplete_claim": "Stops where its content should be: it states nothing to check.",
}
# Signals of the calibrated score worth saying when the score is what failed the claim.
SIGNAL_WORDS = {
    "number_conflict": "A number differs from the evidence (which gives another value in the same unit).",
    "negation_mismatch": "It is negated where the evidence is not, or the other way round.",
    "direction_conflict": "It says the opposite direction of the evidence (e.g. increases against decreases).",
}
VERDICT_LABEL = {"supported": "Supported", "unsupported": "Failed", "unverified": "Not verified"}
EDIT_DECISION_WORDS = {
    "served": "The checks pass your text: it would be served as written.",
    "repaired": "The checks pass only part of your text; the failing claims are listed below.",
    "rejected": "The checks fail your text. You may still approve it: the verification is kept with the decision.",
    "unverified": "No claim verifier is configured: your text was not checked.",
}


def _quoted(found: list[str]) -> str:
    return ": " + ", ".join(f"“{f}”" for f in found) if found else ""


def segments(text: str, ranges: list[tuple[int, int, str, int]]) -> list[dict]:
    """``text`` cut where marks start and end: [{text, cls, claims}], cls "" for unmarked text. ``ranges``:
    (start, end, cls, claim number); where marks overlap, "bad" wins over "good" (a failing claim's
    evidence is what the reviewer must see)."""
    cuts = sorted({0, len(text), *(p for s, e, *_ in ranges for p in (s, e) if 0 <= p <= len(text))})
    out = []
    for start, end in zip(cuts, cuts[1:]):
        covering = [r for r in ranges if r[0] <= start and end <= r[1]]
        classes = {r[2] for r in covering}
        cls = "bad" if "bad" in classes else (next(iter(classes)) if classes else "")
        piece = {"text": text[start:end], "cls": cls, "claims": sorted({r[3] for r in covering if r[3]})}
        if out and out[-1]["cls"] == piece["cls"] and out[-1]["claims"] == piece["claims"]:
            out[-1]["text"] += piece["text"]
        else:
            out.append(piece)
    return out


def _find_all(text: str, needle: str) -> list[tuple[int, int]]:
    """Where ``needle`` occurs in ``text`` as a whole token (case-insensitive)."""
    import re

    pattern = re.compile(rf"(?<![0-9A-Za-z]){re.escape(needle)}(?![0-9A-Za-z])", re.I)
    return [m.span() for m in pattern.finditer(text)]


def locate(span: dict, text: str) -> tuple[int, int] | None:
    """The span's offsets in ``text``: as stored when they hold its sentence, else found by its text."""
    start, end = span.get("start"), span.get("end")
    if isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text) \
            and text[start:end] == span.get("text"):
        return start, end
    found = text.find(span.get("text") or "\0")
    return (found, found + len(span["text"])) if found >= 0 and span.get("text") else None


def _source_of(span: dict, sources: list[dict]) -> tuple[int, dict] | None:
    for n, source in enumerate(sources, 1):
        if source["chunk_id"] == span.get("chunk_id"):
            return n, source
    n = span.get("passage")
    return (n, sources[n - 1]) if isinstance(n, int) and 1 <= n <= len(sources) else None


def _window(text: str, start: int, end: int) -> tuple[int, int]:
    """Some context either side of [start, end), cut at a space."""
    lo, hi = max(0, start - CONTEXT_CHARS), min(len(text), end + CONTEXT_CHARS)
    if lo > 0:
        space = text.find(" ", lo, start)
        lo = space + 1 if space >= 0 else lo
    if hi < len(text):
        space = text.rfind(" ", end, hi)
        hi = space if space >= 0 else hi
    return lo, hi


def reasons(claim: dict, sources: list[dict], risk: str) -> list[str]:
    """Why the claim got its verdict, most decisive first, in words."""
    verdict = claim.get("verdict")
    score, threshold = claim.get("score"), claim.get("threshold")
    if verdict == "unverified":
        return ["Not verified: no claim verifier ran on it."]
    passages = " ".join(s["text"] for s in sources)
    if verdict == "supported":
        cited = sorted({n for n, s in enumerate(sources, 1) if s["chunk_id"] in claim.get("supporting", [])})
        said = f"Supported by {', '.join(f'[{n}]' for n in cited)}" if cited else "Supported by its evidence"
        out = [said + (f" (score {score:.2f}, needs {threshold:.2f})." if score is not None and threshold
                       is not None else ".")]
        if claim.get("corrected_citation"):
            out.append("Its citation was corrected to the passage that supports it.")
        return out
    out = []
    for veto in claim.get("vetoes", []):
        found = []
        if veto == "number_absent_from_sources":
            found = missing_numbers(claim["text"], passages)
        elif veto == "term_absent_from_sources":
            found = missing_terms(claim["text"], passages)
        out.append(VETO_WORDS.get(veto, f"Failed the check “{veto}”.").format(found=_quoted(found)))
    if score is not None and threshold is not None and score < threshold:
        out.append(f"The verifier's score {score:.2f} is under the {threshold:.2f} a {risk}-risk answer needs.")
        signals = claim.get("signals") or {}
        out.extend(words for name, words in SIGNAL_WORDS.items() if (signals.get(name) or 0) > 0)
        if (signals.get("names_missing") or 0) > 0:
            evidence = " ".join(s.get("text", "") for s in claim.get("evidence_spans", []))
            named = [t for t in missing_terms(claim["text"], evidence or passages) if f"“{t}”" not in " ".join(out)]
            if named or "term_absent_from_sources" not in claim.get("vetoes", []):
                out.append("It names something its evidence does not mention" + _quoted(named) + ".")
    if claim.get("citation") == "unsupported":
        out.append("The passage it cites does not support it.")
    return out or ["The checks did not find it supported."]


def claim_view(number: int, claim: dict, sources: list[dict], risk: str) -> dict:
    failed = claim.get("verdict") != "supported"
    why = reasons(claim, sources, risk)
    marks: list[tuple[int, int, str, int]] = []
    if failed:
        passages = " ".join(s["text"] for s in sources)
        for found in missing_numbers(claim["text"], passages) + missing_terms(claim["text"], passages):
            marks.extend((s, e, "bad", 0) for s, e in _find_all(claim["text"], found))
    evidence = []
    spans = sorted(claim.get("evidence_spans", []), key=lambda s: -(s.get("similarity") or 0.0))  # best first
    for span in spans:
        located = _source_of(span, sources)
        if located is None:
            evidence.append({"passage": span.get("passage"), "title": "(a passage not among the sources)",
                             "doc_id": "", "similarity": span.get("similarity"), "located": False,
                             "supports": False,
                             "segments": [{"text": span.get("text", ""), "cls": "evidence", "claims": []}]})
            continue
        n, source = located
        where = locate(span, source["text"])
        if where is None:
            shown = [{"text": span.get("text", ""), "cls": "evidence", "claims": []}]
        else:
            lo, hi = _window(source["text"], *where)
            shown = segments(source["text"][lo:hi], [(where[0] - lo, where[1] - lo, "evidence", 0)])
            if lo > 0:
                shown.insert(0, {"text": "… ", "cls": "", "claims": []})
            if hi < len(source["text"]):
                shown.append({"text": " …", "cls": "", "claims": []})
        evidence.append({"passage": n, "title": source.get("title") or source["doc_id"], "doc_id": source["doc_id"],
                         "similarity": span.get("similarity"), "segments": shown, "located": where is not None,
                         "supports": source["chunk_id"] in claim.get("supporting", [])})
    return {"number": number, "text": claim["text"], "segments": segments(claim["text"], marks),
            "verdict": claim.get("verdict"), "label": VERDICT_LABEL.get(claim.get("verdict"), claim.get("verdict")),
            "failed": failed, "score": claim.get("score"), "threshold": claim.get("threshold"),
            "vetoes": claim.get("vetoes", []), "headline": why[0], "reasons": why[1:], "evidence": evidence,
            "sentence": claim.get("sentence"), "citation": claim.get("citation")}


def source_views(sources: list[dict], claims: list[dict]) -> list[dict]:
    """Each source with every claim's evidence marked in it ("bad": evidence of a failing claim)."""
    out = []
    for n, source in enumerate(sources, 1):
        marks = []
        for c in claims:
            for span in c.get("evidence_spans", []):
                if _source_of(span, sources) == (n, source):
                    where = locate(span, source["text"])
                    if where is not None:
                        cls = "good" if c["verdict"] == "supported" else "bad"
                        marks.append((*where, cls, c["number"]))
        out.append({"number": n, "title": source.get("title") or source["doc_id"], "doc_id": source["doc_id"],
                    "source": source.get("source"), "page": source.get("page"), "score": source.get("score"),
                    "segments": segments(source["text"], marks)})
    return out


def draft_view(draft: dict, claims: list[dict]) -> list[dict]:
    """The draft's sentences, each with the numbers of its claims and whether any failed."""
    sentences = draft.get("sentences") or [{"text": draft.get("answer", "")}]
    out = []
    for i, sentence in enumerate(sentences):
        mine = [c for c in claims if c.get("sentence") == i]
        out.append({"text": sentence.get("text", ""), "claims": [c["number"] for c in mine],
                    "failed": any(c["failed"] for c in mine), "checked": bool(mine)})
    return out


def answer_reasons(item: dict) -> list[str]:
    """Why the item is in the queue beyond its claims: the answer as a whole, a user's thumbs down, the
    quality judge's flag."""
    out = []
    check = item.get("answer_check") or {}
    if check and not check.get("answers", True):
        if check.get("short_answer_supported") is False and check.get("short_answer"):
            out.append(f"The short answer “{check['short_answer']}” is not supported by the passages.")
        elif check.get("judge_p") is not None and check.get("threshold") is not None:
            read = " (its best piece)" if check.get("judge_pieces") else ""
            parts = ", nor to any part of the question on its own" if check.get("parts") else ""
            out.append(f"The judge gives {check['judge_p']:.2f}{read} that the passages state this as the answer "
                       f"(needs {check['threshold']:.2f}){parts}.")
        elif check.get("asks") and not check.get("supplied"):
            out.append(f"The question asks for a {check['asks']}, and no supported claim names one.")
        else:
            out.append("The answer as a whole does not answer the question.")
    for note in item.get("feedback", []):
        said = note.get("comment") or note.get("correction")
        out.append(f"A user marked the answer down ({note.get('at', '')})" + (f": “{said}”" if said else "."))
    flag = item.get("flag") or {}
    for reason in flag.get("reasons", []):
        out.append(f"Flagged after delivery: {reason}.")
    return out


def why_listed(item: dict) -> str:
    """One line for the queue: the first failing claim's main reason, or why the item is here at all."""
    sources = item["payload"]["response"].get("sources", [])
    for claim in item["payload"]["response"].get("claims", []):
        if claim.get("verdict") != "supported":
            return reasons(claim, sources, item["risk"])[0]
    payload = item["payload"]
    found = answer_reasons({"answer_check": payload["response"].get("answer_check"), "flag": payload.get("flag"),
                            "feedback": payload.get("feedback", [])})
    return found[0] if found else ""


def item_view(item: dict, flag: dict | None = None, answer_check: dict | None = None,
              mine: dict | None = None) -> dict:
    """Everything the item page shows. ``item``: ReviewItem as JSON; ``mine``: the viewer's latest edit
    under their current lease (its verification is shown, and approving approves it)."""
    sources = item.get("sources", [])
    claims = [claim_view(n, c, sources, item["risk"]) for n, c in enumerate(item.get("claims", []), 1)]
    for view, raw in zip(claims, item.get("claims", [])):
        view["evidence_spans"] = raw.get("evidence_spans", [])
    failed = [c for c in claims if c["failed"]]
    edit = None
    if mine is not None:
        verification = mine.get("verification") or {}
        edit_claims = [claim_view(n, c, sources, item["risk"])
                       for n, c in enumerate(verification.get("claims", []), 1)]
        edit = {"text": mine["text"], "at": mine.get("created_at"), "decision": verification.get("decision"),
                "words": EDIT_DECISION_WORDS.get(verification.get("decision"), ""),
                "served_text": verification.get("text"), "claims": edit_claims,
                "failed": [c for c in edit_claims if c["failed"]]}
    return {"claims": claims, "failed": failed, "draft": draft_view(item["draft"], claims),
            "sources": source_views(sources, claims),
            "answer_reasons": answer_reasons({**item, "answer_check": answer_check, "flag": flag}),
            "edit": edit}

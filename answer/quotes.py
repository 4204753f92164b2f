"""Quoted spans: the sentence(s) of a cited passage that best match the answer sentence citing it.

A quote lets a reader (and the grounding stage) see the evidence without reading the whole chunk. It is
chosen by word overlap; it is a pointer into the passage, not a verdict on the claim.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n{2,}|\n(?=[-*•#|])")
_WORD = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*")
_STOP = frozenset("""a an the of to in on at for and or is are was were be been it its this that with by as from
    can do does did how what which when where who why not no yes you your i k2 halden""".split())
MAX_QUOTE_CHARS = 300


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the passage's sentences, whitespace trimmed."""
    spans, start = [], 0
    for boundary in list(_SENTENCE_END.finditer(text)) + [None]:
        end = boundary.start() if boundary else len(text)
        piece = text[start:end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            spans.append((start + lead, start + len(piece.rstrip())))
        if boundary:
            start = boundary.end()
    return spans


def passage_sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text)]


def best_quote(claim: str, passage: str) -> str:
    """A verbatim span of ``passage``: the sentence sharing most words with ``claim``, with its neighbour
    when that covers words the best one lacks."""
    spans = sentence_spans(passage)
    if not spans:
        return ""
    claim_words = _words(claim)
    scores = [len(claim_words & _words(passage[a:b])) for a, b in spans]
    best = max(range(len(spans)), key=lambda i: (scores[i], -i))
    start, end = spans[best]
    # Claims often merge two adjacent sentences: extend when the neighbour covers words the best one lacks.
    covered = claim_words & _words(passage[start:end])
    for neighbour in (best + 1, best - 1):
        if 0 <= neighbour < len(spans):
            n_start, n_end = spans[neighbour]
            if (claim_words & _words(passage[n_start:n_end])) - covered:
                wider = (min(start, n_start), max(end, n_end))
                if wider[1] - wider[0] <= MAX_QUOTE_CHARS:
                    start, end = wider
                break
    quote = passage[start:end]
    return quote if len(quote) <= MAX_QUOTE_CHARS else quote[:MAX_QUOTE_CHARS - 1] + "…"

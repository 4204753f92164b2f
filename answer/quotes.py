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


def passage_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def best_quote(claim: str, passage: str) -> str:
    """The passage sentence sharing most words with ``claim`` (with its neighbour if that adds more)."""
    sentences = passage_sentences(passage)
    if not sentences:
        return ""
    claim_words = _words(claim)
    scores = [len(claim_words & _words(s)) for s in sentences]
    best = max(range(len(sentences)), key=lambda i: (scores[i], -i))
    quote = sentences[best]
    # Claims often merge two adjacent sentences: extend when the neighbour covers words the best one lacks.
    covered = claim_words & _words(quote)
    for neighbour in (best + 1, best - 1):
        if 0 <= neighbour < len(sentences) and (claim_words & _words(sentences[neighbour])) - covered:
            pair = (quote, sentences[neighbour]) if neighbour > best else (sentences[neighbour], quote)
            candidate = " ".join(pair)
            if len(candidate) <= MAX_QUOTE_CHARS:
                quote = candidate
            break
    return quote if len(quote) <= MAX_QUOTE_CHARS else quote[:MAX_QUOTE_CHARS - 1] + "…"

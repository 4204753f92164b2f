"""BM25 as sparse vectors, computed by attest and stored in Qdrant.

Tokenizer (documents and queries alike):
  1. lower-case the text and take its unicode word runs (``\\w+``), splitting on ``_``;
  2. drop English stop words and single characters that are not digits;
  3. stem each word with the Snowball English (Porter2) stemmer.

A document's sparse vector holds one BM25 term-frequency weight per distinct term,
``tf * (k1 + 1) / (tf + k1 * (1 - b + b * doc_len / avg_len))``; Qdrant multiplies in the IDF
(``Modifier.IDF``) at query time from its own document counts, so the index never needs rebuilding
when documents are added. A query's vector holds 1.0 per distinct term, so the dot product is the
BM25 score. Term ids are the first 4 bytes of the term's BLAKE2b digest (stable across processes).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer

_WORD = re.compile(r"[^\W_]+", re.UNICODE)

# The usual English stop-word list (Lucene's and NLTK's, merged), without negations: "not" and "no"
# carry meaning that a grounding check or a query may need. Grounding keeps a list of its own (it compares
# direction words this one drops, such as up/down and above/below); the stemmer below is shared.
STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom why will
    with would you your yours yourself yourselves s t d ll m o re ve y""".split()
)

_stemmer = snowballstemmer.stemmer("english")
_stemmer_lock = threading.Lock()


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """Snowball English (Porter2), shared with grounding's content words (grounding/checks.py) so that both
    reduce a word alike. The stemmer holds the word it works on, so threads take turns (only on cache misses)."""
    with _stemmer_lock:
        return _stemmer.stemWord(word)


def tokenize(text: str) -> list[str]:
    """The BM25 tokens of ``text`` (see the module docstring for the rules)."""
    tokens = []
    for word in _WORD.findall(text.lower()):
        if word in STOP_WORDS or (len(word) == 1 and not word.isdigit()):
            continue
        tokens.append(stem(word))
    return tokens


@lru_cache(maxsize=500_000)
def term_id(term: str) -> int:
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "little")


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]

    def __bool__(self) -> bool:
        return bool(self.indices)


class Bm25Encoder:
    """Turns text into BM25 sparse vectors; ``k1``/``b``/``avg_len`` are the usual BM25 parameters."""

    def __init__(self, k1: float = 1.2, b: float = 0.75, avg_len: float = 120.0):
        self.k1, self.b, self.avg_len = k1, b, avg_len

    def encode_tokens(self, tokens: list[str]) -> SparseVector:
        counts = Counter(tokens)
        norm = self.k1 * (1 - self.b + self.b * len(tokens) / self.avg_len)
        weights: dict[int, float] = {}
        for term, tf in counts.items():
            # Two terms whose ids collide add up, as if they were one term.
            tid = term_id(term)
            weights[tid] = weights.get(tid, 0.0) + tf * (self.k1 + 1) / (tf + norm)
        return SparseVector(list(weights), list(weights.values()))

    def encode_document(self, text: str) -> SparseVector:
        return self.encode_tokens(tokenize(text))

    def encode_query(self, text: str) -> SparseVector:
        ids = sorted({term_id(t) for t in tokenize(text)})
        return SparseVector(ids, [1.0] * len(ids))

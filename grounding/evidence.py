"""Evidence per claim: the few passage sentences that best match it, cited passages first.

The verifier reads 2-3 sentences rather than whole passages: a shorter input is both faster (the cost of a
cross-encoder or a judge's prefill grows with its length) and more accurate on this data (benchmarks/
grounding.py measures the curve). Sentences are ranked by MiniLM cosine similarity to the claim (the same
encoder as retrieval), with a lexical nudge towards sentences that hold the claim's numbers and names, so a
figure the claim states is never left out of the evidence when a passage does contain it.

    pool = EvidencePool.build(passages, encoder)         # once per answer: every sentence embedded once
    picked = pool.select(claim_text, claim_vector, cited=[1], k=3)
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from grounding.checks import content_words, numbers_in, salient_tokens

MAX_SENTENCE_WORDS = 80
_CACHE_SIZE = 20_000  # sentence embeddings kept (about 30 MB)
_EMBEDDINGS: "OrderedDict[str, np.ndarray]" = OrderedDict()
_cache_lock = threading.Lock()
_PARAGRAPH = re.compile(r"\n\s*\n|\n(?=\s*(?:[-*•#|]|\d+[.)]\s))")
SHORT_PIECE_WORDS = 6  # an answer sentence shorter than this is matched to the passages with the question
GAP = "..."  # where a condensed passage leaves sentences out
# A sentence that leans on the one before it: a pronoun or demonstrative opening, or a connective.
_NEEDS_CONTEXT = re.compile(
    r"^(it|its|this|that|these|those|they|their|them|he|she|his|her|such|the latter|the former|both|"
    r"however|therefore|thus|also|in addition|additionally|as a result|instead)\b", re.IGNORECASE)


@dataclass
class Passage:
    """One retrieved passage, numbered as the answer stage numbered it (1-based)."""

    number: int
    chunk_id: str
    text: str
    doc_id: str = ""
    source: str = ""
    title: str = ""
    page: int | None = None

    @classmethod
    def from_hit(cls, number: int, hit) -> "Passage":
        return cls(number, hit.id, hit.text, hit.doc_id, hit.source, hit.title, hit.page)


@dataclass
class EvidenceSentence:
    passage: int        # Passage.number
    chunk_id: str
    position: int       # index of the sentence inside its passage
    text: str
    similarity: float = 0.0


@dataclass
class Evidence:
    sentences: list[EvidenceSentence] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.sentences)

    @property
    def passages(self) -> list[int]:
        out: list[int] = []
        for s in self.sentences:
            if s.passage not in out:
                out.append(s.passage)
        return out

    @property
    def chunk_ids(self) -> list[str]:
        out: list[str] = []
        for s in self.sentences:
            if s.chunk_id not in out:
                out.append(s.chunk_id)
        return out


@lru_cache(maxsize=1)
def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)


def passage_sentences(text: str) -> list[str]:
    """Sentences of a passage: paragraphs and list items first (Markdown, tables), then pysbd; very long
    sentences are cut into windows so that none dominates the verifier's input."""
    out: list[str] = []
    for block in _PARAGRAPH.split(text):
        block = " ".join(block.split())
        if not block:
            continue
        for sentence in _segmenter().segment(block):
            words = sentence.split()
            for start in range(0, len(words), MAX_SENTENCE_WORDS):
                piece = " ".join(words[start:start + MAX_SENTENCE_WORDS])
                if len(re.findall(r"\w", piece)) >= 3:
                    out.append(piece)
    return out


class EvidencePool:
    """All sentences of an answer's passages with their embeddings, built once per answer."""

    def __init__(self, passages: list[Passage], sentences: list[EvidenceSentence], vectors: np.ndarray):
        self.passages = {p.number: p for p in passages}
        self.sentences = sentences
        self.vectors = vectors
        self._words = [content_words(s.text) for s in sentences]
        self._lower = [s.text.lower() for s in sentences]

    @classmethod
    def build(cls, passages: list[Passage], encoder, threads: int = 1, batch_size: int = 64) -> "EvidencePool":
        """Split and embed the passages' sentences. Embeddings are cached by sentence text (popular chunks
        recur across requests, and a regenerated answer is checked against the same passages)."""
        sentences = [EvidenceSentence(p.number, p.chunk_id, i, text)
                     for p in passages for i, text in enumerate(passage_sentences(p.text))]
        with _cache_lock:
            missing = list(dict.fromkeys(s.text for s in sentences if s.text not in _EMBEDDINGS))
        if missing:
            fresh = np.asarray(encoder.encode(missing, batch_size=batch_size, threads=threads), dtype=np.float32)
            with _cache_lock:
                for text, vector in zip(missing, fresh):
                    _EMBEDDINGS[text] = vector
                while len(_EMBEDDINGS) > _CACHE_SIZE:
                    _EMBEDDINGS.popitem(last=False)
        with _cache_lock:
            vectors = np.stack([_EMBEDDINGS[s.text] for s in sentences]) if sentences \
                else np.zeros((0, 384), dtype=np.float32)
            for s in sentences:
                _EMBEDDINGS.move_to_end(s.text)
        return cls(passages, sentences, vectors)

    def scores(self, claim: str, claim_vector: np.ndarray) -> np.ndarray:
        """Cosine similarity plus a small bonus for each of the claim's numbers and names a sentence holds."""
        if not self.sentences:
            return np.zeros(0, dtype=np.float32)
        sims = self.vectors @ np.asarray(claim_vector, dtype=np.float32)
        keys = numbers_in(claim) | salient_tokens(claim)
        if keys:
            bonus = np.array([sum(1 for k in keys if k in low) / len(keys) for low in self._lower], dtype=np.float32)
            sims = sims + 0.15 * bonus
        return sims

    def select(self, claim: str, claim_vector: np.ndarray, cited: list[int] | None = None, k: int = 3,
               only: list[int] | None = None) -> Evidence:
        """Up to ``k`` sentences: the best of the cited passages first (at most ``k - 1`` of them when other
        passages exist, so one slot stays open for a better match elsewhere), then the best of the rest.
        ``only`` restricts the choice to those passages. Returned in passage and reading order."""
        if not self.sentences:
            return Evidence()
        sims = self.scores(claim, claim_vector)
        allowed = [i for i, s in enumerate(self.sentences) if only is None or s.passage in only]
        ranked = sorted(allowed, key=lambda i: -sims[i])
        chosen: list[int] = []
        cited = [c for c in (cited or []) if c in self.passages and (only is None or c in only)]
        if cited:
            others_exist = any(self.sentences[i].passage not in cited for i in allowed)
            quota = k - 1 if others_exist and k > 1 else k
            chosen = [i for i in ranked if self.sentences[i].passage in cited][:quota]
        for i in ranked:
            if len(chosen) >= k:
                break
            if i not in chosen:
                chosen.append(i)
        chosen.sort(key=lambda i: (self.sentences[i].passage, self.sentences[i].position))
        picked = []
        for i in chosen:
            s = self.sentences[i]
            picked.append(EvidenceSentence(s.passage, s.chunk_id, s.position, s.text, float(sims[i])))
        return Evidence(picked)

    def condensed(self, scores: np.ndarray, keep: int, must: set[int] = frozenset()) -> dict[int, str]:
        """Each passage cut to its ``keep`` best-scoring sentences, in reading order with "..." where sentences
        were left out. Kept as well, beyond ``keep``: the sentences in ``must`` (indices into ``sentences``), a
        Markdown heading (a few tokens that say what the passage is about; ranked, it would take a slot from a
        sentence with content), and the sentence before a kept one that opens with a reference back ("It",
        "This", "However"...), so a kept sentence is never cut from what it refers to. Passages of ``keep``
        sentences or fewer come back whole."""
        by_passage: dict[int, list[int]] = {}
        for index, sentence in enumerate(self.sentences):
            by_passage.setdefault(sentence.passage, []).append(index)
        out = {number: passage.text for number, passage in self.passages.items()}
        for number, indices in by_passage.items():
            if len(indices) <= keep:
                continue
            headings = {i for i in indices if self.sentences[i].text.startswith("#")}
            chosen = {i for i in indices if i in must}
            for i in sorted((i for i in indices if i not in headings), key=lambda i: -scores[i]):
                if len(chosen) >= keep:
                    break
                chosen.add(i)
            for i in list(chosen):
                position = self.sentences[i].position
                if position > 0 and _NEEDS_CONTEXT.match(self.sentences[i].text):
                    chosen.add(indices[position - 1])
            out[number] = self._join(indices, chosen | headings)
        return out

    def _join(self, indices: list[int], chosen: set[int]) -> str:
        parts: list[str] = []
        previous = -1
        for i in indices:
            if i not in chosen:
                continue
            position = self.sentences[i].position
            if position != previous + 1:
                parts.append(GAP)
            parts.append(self.sentences[i].text)
            previous = position
        if previous != self.sentences[indices[-1]].position:
            parts.append(GAP)
        return " ".join(parts)

    def best_passages(self, claim: str, claim_vector: np.ndarray, exclude: list[int] = (), limit: int = 2) -> list[int]:
        """Passage numbers ordered by their best sentence's match to the claim."""
        sims = self.scores(claim, claim_vector)
        best: dict[int, float] = {}
        for i, s in enumerate(self.sentences):
            if s.passage in exclude:
                continue
            best[s.passage] = max(best.get(s.passage, -1.0), float(sims[i]))
        return [p for p, _ in sorted(best.items(), key=lambda kv: -kv[1])][:limit]


def answer_judge_documents(question: str, answer: str, passages: list[Passage], encoder, keep: int,
                           threads: int = 1) -> list[str]:
    """What the answer judge reads, in the passages' order (the server's grounding/decide.py and
    benchmarks/answer_judge_replay.py both call this): each passage whole (``keep`` 0), or cut to ``keep``
    sentences (EvidencePool.condensed): first, for each sentence of the answer, the one sentence of all the
    passages that best matches it (a short one, such as the short answer, with the question: "24 months" alone
    matches nothing), so no part of the answer loses the sentence it rests on (one query for the whole answer
    can let the first sentence's evidence crowd out the second's); then, up to ``keep`` per passage, the best
    matches for the question with the whole answer. The sentence embeddings come from the cache when the
    passages were read before."""
    if keep <= 0:
        return [p.text for p in passages]
    pool = EvidencePool.build(passages, encoder, threads=threads)
    if not pool.sentences:
        return [p.text for p in passages]
    pieces = passage_sentences(answer)
    queries = [f"{question} {answer}"] + [piece if len(piece.split()) >= SHORT_PIECE_WORDS else f"{question} {piece}"
                                          for piece in pieces]
    vectors = np.asarray(encoder.encode(queries, batch_size=len(queries), threads=threads), dtype=np.float32)
    must = {int(np.argmax(pool.scores(q, v))) for q, v in zip(queries[1:], vectors[1:])}
    cut = pool.condensed(pool.scores(queries[0], vectors[0]), keep, must)
    return [cut[p.number] for p in passages]

"""Less to read, same evidence: each passage cut to the sentences that matter for the question.

On 2 cores the prompt's prefill is most of an answer's time (a 1,100-token prompt for a 40-token answer), and
most of each 256-token chunk says nothing about the question. Before generation every passage keeps:
- its ``keep`` sentences that best match the question (MiniLM cosine similarity, with the grounding stage's
  nudge towards sentences holding the question's numbers and names: grounding/evidence.py);
- the sentence before a kept one that opens with a reference back ("It", "This", "They", "The latter"...), so
  a kept sentence is never cut from what it refers to;
in reading order, with "..." where sentences were left out. Every passage keeps its number and chunk id: the
model cites the same [n] as before, and grounding checks claims against the whole chunk (support anywhere in
it is support). The sentence embeddings land in the evidence cache the grounding stage reads next, so the
split-and-embed work is not done twice.

    views = condensed_views(question, question_vector, passages, encoder, keep=3)
"""

from __future__ import annotations

import re

import numpy as np

from answer.passages import NumberedPassages
from answer.prompts import PassageView
from grounding.evidence import EvidencePool, Passage

GAP = "..."
# A sentence that leans on the one before it: a pronoun or demonstrative opening, or a connective.
_NEEDS_CONTEXT = re.compile(
    r"^(it|its|this|that|these|those|they|their|them|he|she|his|her|such|the latter|the former|both|"
    r"however|therefore|thus|also|in addition|additionally|as a result|instead)\b", re.IGNORECASE)


def condensed_views(question: str, question_vector, passages: NumberedPassages, encoder, keep: int,
                    threads: int = 1) -> list[PassageView]:
    """The numbered passages as the model should read them; ``keep`` <= 0 shows them whole."""
    passages = NumberedPassages.of(passages)
    whole = [PassageView(n, h.doc_id, h.page, h.text) for n, h in passages.numbered()]
    if keep <= 0 or not len(passages):
        return whole
    pool = EvidencePool.build([Passage.from_hit(n, h) for n, h in passages.numbered()], encoder, threads=threads)
    scores = pool.scores(question, np.asarray(question_vector, dtype=np.float32))
    by_passage: dict[int, list[int]] = {}
    for index, sentence in enumerate(pool.sentences):
        by_passage.setdefault(sentence.passage, []).append(index)

    views = []
    for view in whole:
        indices = by_passage.get(view.number, [])
        if len(indices) <= keep:  # short already: nothing to leave out
            views.append(view)
            continue
        best = sorted(indices, key=lambda i: -scores[i])[:keep]
        chosen = set(best)
        for i in best:
            position = pool.sentences[i].position
            if position > 0 and _NEEDS_CONTEXT.match(pool.sentences[i].text):
                chosen.add(indices[position - 1])
        views.append(PassageView(view.number, view.source, view.page, _join(pool, indices, chosen)))
    return views


def _join(pool: EvidencePool, indices: list[int], chosen: set[int]) -> str:
    """Kept sentences in reading order, a gap marker wherever sentences were left out."""
    parts: list[str] = []
    previous = -1
    for i in indices:
        if i not in chosen:
            continue
        position = pool.sentences[i].position
        if position != previous + 1:
            parts.append(GAP)
        parts.append(pool.sentences[i].text)
        previous = position
    if previous != pool.sentences[indices[-1]].position:
        parts.append(GAP)
    return " ".join(parts)

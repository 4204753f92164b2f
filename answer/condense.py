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

import numpy as np

from answer.passages import NumberedPassages
from answer.prompts import PassageView
from grounding.evidence import EvidencePool, Passage


def condensed_views(question: str, question_vector, passages: NumberedPassages, encoder, keep: int,
                    threads: int = 1) -> list[PassageView]:
    """The numbered passages as the model should read them; ``keep`` <= 0 shows them whole."""
    passages = NumberedPassages.of(passages)
    whole = [PassageView(n, h.doc_id, h.page, h.text) for n, h in passages.numbered()]
    if keep <= 0 or not len(passages):
        return whole
    pool = EvidencePool.build([Passage.from_hit(n, h) for n, h in passages.numbered()], encoder, threads=threads)
    texts = pool.condensed(pool.scores(question, np.asarray(question_vector, dtype=np.float32)), keep)
    return [PassageView(v.number, v.source, v.page, texts[v.number]) for v in whole]

"""Condensed passages (answer/condense.py, on by default for simple questions): what the model reads is each
retrieved passage cut to the sentences that match the question, with its number and chunk id unchanged, the
sentence a kept one refers back to, and "..." where sentences were left out."""

from __future__ import annotations

import re

WARRANTY = "How long is the standard warranty on the K2 camera body?"
CHARGE = "How long does a full battery charge take with a USB PD adapter?"


def _views(demo_index, encoder, question: str, keep: int):
    from answer.condense import condensed_views
    from answer.passages import NumberedPassages

    _, retriever = demo_index
    passages = NumberedPassages(retriever.search(question, top_k=5, mode="hybrid").hits)
    return passages, condensed_views(question, encoder.encode_query(question), passages, encoder, keep)


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.replace(" ...", "").replace("... ", "")) if s]


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def _find(words: list[str], part: list[str]) -> int:
    """Where ``part`` starts as a run of ``words``, or -1."""
    return next((i for i in range(len(words) - len(part) + 1) if words[i:i + len(part)] == part), -1)


def test_each_passage_keeps_its_number_and_its_best_sentences_in_reading_order(demo_index, encoder):
    passages, views = _views(demo_index, encoder, WARRANTY, keep=3)
    whole = {n: hit for n, hit in passages.numbered()}
    assert [v.number for v in views] == list(whole)
    shortened = 0
    for view in views:
        original = _words(whole[view.number].text)  # compared as words: the splitter tidies spaces and tables
        if view.text == whole[view.number].text:
            continue
        shortened += 1
        assert "..." in view.text and len(view.text) < len(whole[view.number].text)
        kept = _sentences(view.text)
        # every kept sentence is the passage's own, in the passage's order; at most 3 + the ones referred to
        positions = [_find(original, _words(s)) for s in kept]
        assert all(p >= 0 for p in positions) and positions == sorted(positions), view.text
        assert len(kept) <= 6
    assert shortened, "the demo's 256-token chunks are longer than 3 sentences"
    text = " ".join(v.text for v in views)
    assert "24 months" in text, "the sentence that answers is kept"


def test_keep_zero_shows_whole_passages_and_a_sentence_leaning_on_the_one_before_keeps_it(demo_index, encoder):
    passages, whole = _views(demo_index, encoder, CHARGE, keep=0)
    assert [v.text for v in whole] == [h.text for _, h in passages.numbered()]
    _, views = _views(demo_index, encoder, CHARGE, keep=1)
    for view, original in zip(views, whole):
        kept = _sentences(view.text)
        for i, sentence in enumerate(kept):
            if re.match(r"(It|This|They|These)\b", sentence) and i == 0:
                # its predecessor in the passage must be kept too (unless it opens the passage)
                assert original.text.lstrip().startswith(sentence[:30]), (sentence, view.text)

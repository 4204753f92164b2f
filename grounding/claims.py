"""Claims: an answer split into the statements that can be checked, each with the citations it carries.

    claims = split_claims(answer_result)        # AnswerResult from the answer stage
    claims = split_claims("It lasts two years [1]. It costs $49 [2].")   # or plain text with [n] markers

Rules, in order:
1. every answer sentence (the model's own sentences when it gave them) is split again with pysbd, since a
   model sometimes packs two sentences into one item;
2. a sentence that states several facts is split where that is cheap and safe: at semicolons, and at
   ", and" / ", but" / ", while" / ", whereas" when both sides can stand alone (the right side has its own
   verb and at least three words); every part keeps the sentence's citations;
3. sentences that claim nothing about the world are passed over: "The documents do not say.", "I don't
   know", questions, and statements about the passages themselves ("The passages do not mention ...");
4. a fragment that answers the question without restating it ("26.1 megapixels.", "HK2SET.DAT", "Maren
   Solberg.": short, no verb) is checked together with the question it answers ("How many megapixels does
   the Halden K3 have? 26.1 megapixels."): alone it says nothing checkable about what was asked, and a
   one-word answer would otherwise not be checked at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

_MARKER = re.compile(r"\s*\[(\d+(?:\s*,\s*\d+)*)\]")
_NON_CLAIM = [
    re.compile(p, re.I)
    for p in (
        r"^\s*(the\s+)?(documents?|passages?|sources?|context|provided (information|text|documents?)|texts?)\b.*"
        r"\b(do(es)?\s+not|don't|doesn't|never|did\s+not)\b.*"
        r"\b(say|mention|state|specify|contain|include|provide|cover|address|describe|give|list)\b",
        r"^\s*(the\s+)?(documents?|passages?|sources?|context)\b.*\b(silent|no information|nothing)\b",
        r"^\s*(there is|there's)\s+(no|not enough)\s+information\b",
        r"^\s*(no|not enough)\s+information\b",
        r"^\s*i\s+(do\s+not|don't|cannot|can't)\s+(know|say|tell|find|answer)\b",
        r"^\s*(i'm|i am)\s+(not sure|unable|sorry)\b",
        r"^\s*(sorry|unfortunately)\b.*\b(cannot|can't|unable|no information)\b",
    )
]
# Cues that the right half of ", and ..." has a finite verb of its own (so it is a clause, not a list item).
_VERB_CUE = re.compile(
    r"\b(is|are|was|were|be|been|has|have|had|can|cannot|can't|will|won't|would|does|do|did|doesn't|don't|"
    r"must|should|may|might|shall|needs?|requires?|supports?|uses?|lasts?|takes?|costs?|includes?|offers?|"
    r"covers?|provides?|allows?|adds?|gives?|comes?|works?|runs?|weighs?|holds?|records?|shoots?|charges?|"
    r"increases?|decreases?|reduces?|improves?|causes?|shows?|contains?|ships?)\b", re.I)
_FRAGMENT_MAX_WORDS = 6
_CLAUSE_SPLIT = re.compile(r",\s+(?:and|but|while|whereas)\s+|;\s+")
_MIN_CLAUSE_WORDS = 3


@dataclass
class Claim:
    """One checkable statement. ``sentence`` indexes the answer sentence it came from (removal works per
    sentence); ``passages`` are the 1-based passage numbers it cites, ``chunk_ids`` the cited chunks."""

    text: str
    sentence: int
    passages: list[int] = field(default_factory=list)
    chunk_ids: list[str] = field(default_factory=list)


@dataclass
class SplitAnswer:
    sentences: list[str]            # answer sentences without their [n] markers
    claims: list[Claim]
    skipped: list[str]              # sentences that claim nothing
    cites: list[tuple[list[int], list[str]]] = field(default_factory=list)  # per sentence: (passages, chunk ids)


@lru_cache(maxsize=1)
def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)


def strip_markers(text: str) -> str:
    return " ".join(_MARKER.sub("", text).split())


def markers(text: str) -> list[int]:
    found: list[int] = []
    for group in _MARKER.findall(text):
        for n in group.split(","):
            if int(n) not in found:
                found.append(int(n))
    return found


def is_claim(sentence: str) -> bool:
    """False for sentences that state nothing checkable about the world."""
    text = sentence.strip()
    words = re.findall(r"[\w$%.-]+", text)
    if len(words) < 2 or text.endswith("?"):
        return False
    return not any(p.search(text) for p in _NON_CLAIM)


def is_fragment(sentence: str) -> bool:
    """A short answer without a verb of its own: "26.1 megapixels.", "Czech and Polish.", "HK2SET.DAT"."""
    words = re.findall(r"[\w$%.-]+", sentence)
    return 0 < len(words) <= _FRAGMENT_MAX_WORDS and not _VERB_CUE.search(sentence) \
        and not sentence.strip().endswith("?") and not any(p.search(sentence) for p in _NON_CLAIM)


def in_context(sentence: str, question: str) -> str | None:
    """The claim a fragment makes about the question it answers; None for a sentence that stands alone."""
    question = " ".join(question.split())
    if not question or not is_fragment(sentence):
        return None
    if question[-1] not in "?.!":
        question += "?"
    return f"{question} {sentence.strip()}"


def answer_statement(question: str, short_answer: str | None) -> str | None:
    """The statement a short answer makes about its question, to verify as one claim: "Who won the 2021
    US Open? Naomi Osaka." (the form of rule 4's fragments and of the verifier's question-answer training
    examples). None when there is no short answer."""
    question = " ".join(question.split())
    short_answer = " ".join((short_answer or "").split()).rstrip(".")
    if not question or not short_answer:
        return None
    if question[-1] not in "?.!":
        question += "?"
    return f"{question} {short_answer}."


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _segmenter().segment(text) if s.strip()]


def split_clauses(sentence: str) -> list[str]:
    """A sentence that states several facts, cut where each part still stands alone; otherwise [sentence]."""
    pieces = _CLAUSE_SPLIT.split(sentence)
    if len(pieces) == 1:
        return [sentence]
    parts = [pieces[0]]
    for piece in pieces[1:]:
        if len(piece.split()) >= _MIN_CLAUSE_WORDS and _VERB_CUE.search(piece) \
                and len(parts[-1].split()) >= _MIN_CLAUSE_WORDS and _VERB_CUE.search(parts[-1]):
            parts.append(piece)
        else:  # a list item or a fragment: keep it with what precedes it
            sep = "; " if ";" in sentence else ", and "
            parts[-1] = parts[-1] + sep + piece
    out = []
    for part in parts:
        part = part.strip().rstrip(",;")
        if not part:
            continue
        part = part[0].upper() + part[1:]
        if part[-1] not in ".!?":
            part += "."
        out.append(part)
    return out


def split_claims(answer) -> SplitAnswer:
    """Claims of ``answer``: an ``answer.result.AnswerResult`` (its sentences and citations) or plain text
    whose sentences carry ``[n]`` markers."""
    items: list[tuple[str, list[int], list[str]]] = []
    question = "" if isinstance(answer, str) else (getattr(answer, "question", "") or "")
    if isinstance(answer, str):
        for sentence in split_sentences(answer):
            items.append((strip_markers(sentence), markers(sentence), []))
    else:
        if not answer.answerable or not answer.sentences:
            return SplitAnswer([], [], [answer.answer] if answer.answer else [], [])
        for s in answer.sentences:
            passages = [c.passage for c in s.citations] or markers(s.text)
            items.append((strip_markers(s.text), passages, [c.chunk_id for c in s.citations]))

    sentences: list[str] = []
    claims: list[Claim] = []
    skipped: list[str] = []
    cites: list[tuple[list[int], list[str]]] = []
    for text, passages, chunk_ids in items:
        for sentence in split_sentences(text) or [text]:
            index = len(sentences)
            sentences.append(sentence)
            cites.append((list(passages), list(chunk_ids)))
            # Clauses first: "The documents do not say X, but it is Y" still claims Y.
            found = [c for c in split_clauses(sentence) if is_claim(c)]
            contextual = in_context(sentence, question)
            if contextual:
                found = [contextual]
            if not found:
                skipped.append(sentence)
            for clause in found:
                claims.append(Claim(clause, index, list(passages), list(chunk_ids)))
    return SplitAnswer(sentences, claims, skipped, cites)

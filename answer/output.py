"""The model's answer as JSON: the schema it must follow, and the validation that decides if it is usable.

A usable answer is either a decline (``answerable: false``) or sentences that each cite at least one of
the passages actually given, with an optional ``short_answer``: the entity, number, date or phrase that
answers the question (null when the question wants an explanation). Grounding verifies the short answer as
the answer to the question; it is never served unchecked. Anything else (empty, truncated, not JSON, citing passage 7 of 5, a sentence
with no citation) is a ``MalformedOutput`` and sends the request to the next attempt.
"""

from __future__ import annotations

import json
import re

from pydantic import BaseModel, Field, ValidationError

from answer.providers.base import MalformedOutput

DECLINE_TEXT = "The documents do not say."

# What llama.cpp turns into a grammar (and OpenAI into structured output). Kept small: every constraint
# here is one the small local models can follow; validation below enforces the rest.
ANSWER_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "answerable": {"type": "boolean"},
        # Before the sentences: streamed first, and the model commits to what it is answering.
        "short_answer": {"type": ["string", "null"]},
        "sentences": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string"},
                    "passages": {"type": "array", "items": {"type": "integer"}},
                },
                "required": ["text", "passages"],
            },
        },
    },
    "required": ["answerable", "short_answer", "sentences"],
}
# Longer than this, a "short answer" is an explanation: it is dropped (the sentences carry it).
SHORT_ANSWER_MAX_WORDS = 16

_DECLINE_PATTERN = re.compile(
    r"\b(documents?|passages?|context|sources?)\b[^.]{0,40}\b(do(es)?\s+not|don't|doesn't|never)\s+(say|mention|state|"
    r"specify|contain|include|provide|cover)|\bno (information|mention)\b|\bnot (mentioned|specified|stated)\b",
    re.IGNORECASE,
)


class ModelSentence(BaseModel):
    text: str
    passages: list[int] = Field(default_factory=list)


class ModelAnswer(BaseModel):
    answerable: bool
    # Optional in validation: providers without structured output (prompt-only JSON) may leave it out.
    short_answer: str | None = None
    sentences: list[ModelSentence] = Field(default_factory=list)


def _extract_json(text: str) -> str:
    """The JSON object in ``text``: tolerates code fences and chatter around it (prompt-only providers)."""
    stripped = text.strip()
    if stripped.startswith("{"):
        return stripped
    start, end = stripped.find("{"), stripped.rfind("}")
    return stripped[start:end + 1] if 0 <= start < end else stripped


def is_decline_sentence(text: str) -> bool:
    return bool(_DECLINE_PATTERN.search(text))


def normalise_short_answer(text: str | None) -> str | None:
    """The short answer as served: whitespace collapsed, a trailing full stop dropped; None when empty, a
    decline ("not mentioned"), or too long to be short."""
    if text is None:
        return None
    text = " ".join(text.split()).rstrip(".").strip()
    if not text or text.lower() in ("null", "none", "n/a", "unknown") or is_decline_sentence(text):
        return None
    return text if len(text.split()) <= SHORT_ANSWER_MAX_WORDS else None


def parse_answer(text: str, finish_reason: str, passage_count: int, provider: str = "") -> ModelAnswer:
    """Validate raw model output against the passages given; return a normalised ``ModelAnswer``.

    Normalised means: whitespace trimmed, citations de-duplicated and sorted, empty sentences dropped, the
    short answer normalised (``normalise_short_answer``), and a decline (``answerable: false``, or only "the
    documents do not say"-type sentences) reduced to ``DECLINE_TEXT`` with no citations and no short answer.
    """
    if finish_reason == "length":
        raise MalformedOutput("the answer was cut off at the token limit (truncated)", provider)
    if not text or not text.strip():
        raise MalformedOutput("the answer is empty", provider)
    try:
        answer = ModelAnswer.model_validate(json.loads(_extract_json(text)))
    except json.JSONDecodeError as exc:
        raise MalformedOutput(f"the answer is not valid JSON ({exc.msg}): {text[:120]!r}", provider) from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        raise MalformedOutput(f"the answer does not follow the schema ({problems})", provider) from exc

    sentences = [ModelSentence(text=" ".join(s.text.split()), passages=sorted(set(s.passages)))
                 for s in answer.sentences if s.text.strip()]
    substantive = [s for s in sentences if not is_decline_sentence(s.text)]
    if not answer.answerable or not substantive:
        if answer.answerable and not sentences:
            raise MalformedOutput("the answer says it is answerable but has no sentences", provider)
        return ModelAnswer(answerable=False, sentences=[ModelSentence(text=DECLINE_TEXT, passages=[])])

    for index, sentence in enumerate(substantive, start=1):
        if not sentence.passages:
            raise MalformedOutput(f"sentence {index} cites no passage: {sentence.text[:80]!r}", provider)
        bad = [n for n in sentence.passages if not 1 <= n <= passage_count]
        if bad:
            raise MalformedOutput(
                f"sentence {index} cites passage(s) {bad} but only passages 1..{passage_count} were given", provider)
    # A decline sentence tucked between real ones ("X is Y [1]. The documents do not say Z.") is kept as
    # text without a citation requirement; citations it does carry must still point at given passages.
    kept = [s if s in substantive else
            ModelSentence(text=s.text, passages=[n for n in s.passages if 1 <= n <= passage_count])
            for s in sentences]
    return ModelAnswer(answerable=True, short_answer=normalise_short_answer(answer.short_answer), sentences=kept)

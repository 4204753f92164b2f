"""The answer stage's typed result: one pydantic model, the contract with the API layer and the CLI."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Status = Literal["answered", "declined", "unavailable", "over_budget"]
ServedFrom = Literal["model", "cache", "router", "none"]


class Citation(BaseModel):
    passage: int = Field(description="The passage number the model cited (1-based, in the order given).")
    chunk_id: str
    doc_id: str
    source: str
    title: str = ""
    page: int | None = None
    quote: str = Field(description="The passage sentence(s) that best match the cited sentence.")


class AnswerSentence(BaseModel):
    text: str
    citations: list[Citation] = Field(default_factory=list)


class TokenCounts(BaseModel):
    prompt: int = 0
    completion: int = 0
    # False when any count was estimated rather than reported by the provider or counted by its tokenizer.
    exact: bool = True

    @property
    def total(self) -> int:
        return self.prompt + self.completion


class Attempt(BaseModel):
    """One step of the fallback chain: a model call, a skipped provider, or a cache lookup."""

    provider: str
    model: str = ""
    prompt: str = ""
    outcome: str  # "ok", an error kind (timeout, rate_limited, ...), "circuit_open", "over_budget"
    detail: str = ""
    retry_after_s: float | None = None
    latency_ms: float = 0.0
    first_token_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class CacheInfo(BaseModel):
    similarity: float
    question: str
    created_at: str
    entry_id: str
    reviewed: dict | None = None  # an answer a person approved or corrected: {item_id, action, at, risk}


class AnswerResult(BaseModel):
    request_id: str
    question: str
    status: Status
    served_from: ServedFrom
    answer: str
    answerable: bool
    short_answer: str | None = Field(default=None, description="The entity, number, date or phrase that answers "
                                                               "the question, as the model gave it (unverified).")
    sentences: list[AnswerSentence] = Field(default_factory=list)
    route: str
    route_reasons: list[str] = Field(default_factory=list)
    tier: str  # "fast" | "strong" | "cache" | "none"
    provider: str | None = None
    model: str | None = None
    prompt: str | None = None
    tokens: TokenCounts = Field(default_factory=TokenCounts)
    cost_usd: float | None = 0.0
    timings_ms: dict[str, float] = Field(default_factory=dict)
    notice: str | None = None
    cache: CacheInfo | None = None
    attempts: list[Attempt] = Field(default_factory=list)

    @property
    def citations(self) -> list[Citation]:
        return unique_citations(self.sentences)


def unique_citations(sentences: list[AnswerSentence]) -> list[Citation]:
    """Each cited chunk once, in the order the sentences first cite it."""
    seen, out = set(), []
    for sentence in sentences:
        for citation in sentence.citations:
            if citation.chunk_id not in seen:
                seen.add(citation.chunk_id)
                out.append(citation)
    return out

"""The one provider interface: a chat call that streams text, reports tokens, and fails in five ways.

Every provider turns whatever went wrong into one of the ``ProviderError`` kinds below, so the fallback
chain decides by kind, never by parsing a vendor's message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Literal, Protocol

Role = Literal["system", "user", "assistant"]
Tier = Literal["fast", "strong"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass
class ChatRequest:
    messages: list[Message]
    max_tokens: int = 400
    temperature: float = 0.0
    # A JSON schema the output must follow; providers that can enforce it (llama.cpp grammars, OpenAI's
    # json_schema) do, the others get it through the prompt and the caller validates the result.
    json_schema: dict | None = None
    first_token_timeout_s: float = 8.0
    total_timeout_s: float = 30.0


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # False when the provider did not report counts and they were counted or estimated here.
    reported: bool = True

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class ChatResult:
    text: str
    model: str
    usage: Usage
    finish_reason: str  # "stop", "length", "refusal", ...
    first_token_s: float | None = None
    total_s: float = 0.0


# ---- the error taxonomy -------------------------------------------------------------------------------
class ProviderError(Exception):
    kind: str = "unavailable"

    def __init__(self, message: str, provider: str = "", retry_after: float | None = None):
        super().__init__(message)
        self.provider = provider
        self.retry_after = retry_after


class ProviderTimeout(ProviderError):
    """No first token within the first-token limit, or no complete answer within the total limit."""

    kind = "timeout"


class RateLimited(ProviderError):
    """The provider asked us to slow down; ``retry_after`` seconds when it said so."""

    kind = "rate_limited"


class Unavailable(ProviderError):
    """Unreachable, refusing connections, a 5xx, an overload, or misconfigured (key, model, URL)."""

    kind = "unavailable"


class MalformedOutput(ProviderError):
    """The provider answered, but not with something usable: bad wire data, invalid JSON, truncation."""

    kind = "malformed_output"


class Refused(ProviderError):
    """The model declined to answer (a refusal stop reason or a content filter)."""

    kind = "refused"


ERROR_KINDS = ("timeout", "rate_limited", "unavailable", "malformed_output", "refused")


# ---- the interface -----------------------------------------------------------------------------------
class Provider(Protocol):
    name: str

    def model_for(self, tier: Tier) -> str:
        """The model this provider uses for a tier."""

    def stream(self, request: ChatRequest, model: str) -> Iterator[str]:
        """Text deltas as they arrive; the generator's return value (StopIteration.value) is a ChatResult."""

    def count_tokens(self, messages: list[Message], model: str) -> int:
        """Prompt tokens, with the model's tokenizer where one is available here."""


def collect(provider: Provider, request: ChatRequest, model: str,
            on_delta: Callable[[str], None] | None = None) -> ChatResult:
    """Run ``provider.stream`` to the end: the whole text plus usage and timing."""
    stream = provider.stream(request, model)
    try:
        while True:
            try:
                delta = next(stream)
            except StopIteration as done:
                return done.value
            if on_delta is not None and delta:
                on_delta(delta)
    finally:
        stream.close()  # releases the provider's lock / connection if we leave early


class Deadline:
    """First-token and total limits for one call, checked between stream events."""

    def __init__(self, request: ChatRequest, provider: str, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.provider = provider
        self.started = clock()
        self.first_token_limit = request.first_token_timeout_s
        self.total_limit = request.total_timeout_s
        self.first_token_at: float | None = None

    def elapsed(self) -> float:
        return self.clock() - self.started

    def mark_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = self.elapsed()
            if self.first_token_at > self.first_token_limit:
                raise ProviderTimeout(
                    f"first token after {self.first_token_at:.1f} s (limit {self.first_token_limit:.1f} s)",
                    self.provider,
                )

    def check(self) -> None:
        elapsed = self.elapsed()
        if self.first_token_at is None and elapsed > self.first_token_limit:
            raise ProviderTimeout(f"no first token within {self.first_token_limit:.1f} s", self.provider)
        if elapsed > self.total_limit:
            raise ProviderTimeout(f"no complete answer within {self.total_limit:.1f} s", self.provider)

    def remaining(self) -> float:
        return max(0.001, self.total_limit - self.elapsed())

    @property
    def first_token_s(self) -> float | None:
        return self.first_token_at


def estimate_tokens(text: str) -> int:
    """A conservative count when no tokenizer is at hand: about 3 characters per token for English."""
    return max(1, (len(text) + 2) // 3)

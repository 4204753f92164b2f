"""Language-model providers behind one interface (``base.Provider``) and one error taxonomy."""

from __future__ import annotations

from answer.providers.base import (
    ERROR_KINDS, ChatRequest, ChatResult, MalformedOutput, Message, Provider, ProviderError, ProviderTimeout,
    RateLimited, Refused, Unavailable, Usage, collect,
)

PROVIDER_NAMES = ("local", "openai", "anthropic")


def build_provider(name: str, settings) -> Provider:
    """The provider called ``name``, configured from ``settings``."""
    if name == "local":
        from answer.providers.local import LocalProvider

        return LocalProvider(settings)
    if name == "openai":
        from answer.providers.openai import OpenAIProvider

        return OpenAIProvider(settings)
    if name == "anthropic":
        from answer.providers.anthropic import AnthropicProvider

        return AnthropicProvider(settings)
    raise ValueError(f"unknown provider {name!r}: valid providers are {', '.join(PROVIDER_NAMES)}")


def provider_timeouts(name: str, settings) -> tuple[float, float]:
    """(first-token limit, total limit) in seconds for provider ``name``."""
    return (getattr(settings, f"{name}_first_token_timeout_s"), getattr(settings, f"{name}_total_timeout_s"))


__all__ = [
    "ERROR_KINDS", "PROVIDER_NAMES", "ChatRequest", "ChatResult", "MalformedOutput", "Message", "Provider",
    "ProviderError", "ProviderTimeout", "RateLimited", "Refused", "Unavailable", "Usage", "build_provider",
    "collect", "provider_timeouts",
]

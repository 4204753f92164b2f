"""Language-model providers behind one interface (``base.Provider``) and one error taxonomy.

The registry: ``PROVIDERS`` maps each provider's name to its class. A provider class declares its settings
sub-model (``settings_model``, from ``attest_settings``) and takes its name from it, so a name is written once.
Adding a provider: its sub-model in ``attest_settings.PROVIDER_SETTINGS`` (plus the flat ``<name>_<field>``
fields that are its environment variables), its class here.
"""

from __future__ import annotations

from answer.providers.anthropic import AnthropicProvider
from answer.providers.base import (
    ERROR_KINDS, ChatRequest, ChatResult, MalformedOutput, Message, Provider, ProviderError, ProviderTimeout,
    RateLimited, Refused, Unavailable, Usage, collect,
)
from answer.providers.local import LocalProvider
from answer.providers.openai import OpenAIProvider
from attest_settings import PROVIDER_NAMES, PROVIDER_SETTINGS, ProviderName, ProviderSettings, unknown_provider

_CLASSES = (LocalProvider, OpenAIProvider, AnthropicProvider)
_BY_NAME = {cls.name: cls for cls in _CLASSES}
if set(_BY_NAME) != set(PROVIDER_SETTINGS):  # a settings sub-model without its class, or the reverse
    raise ImportError(f"provider classes {sorted(_BY_NAME)} do not match the settings sub-models "
                      f"{sorted(PROVIDER_SETTINGS)} (attest_settings.PROVIDER_SETTINGS)")

# Name -> provider class, in the order of PROVIDER_NAMES.
PROVIDERS: dict[str, type] = {name: _BY_NAME[name] for name in PROVIDER_NAMES}


def provider_class(name: str) -> type:
    """The class of provider ``name``; ValueError naming the valid providers when there is none."""
    try:
        return PROVIDERS[name]
    except KeyError:
        raise unknown_provider(name) from None


def build_provider(name: str, settings) -> Provider:
    """The provider called ``name``, configured from ``settings``."""
    return provider_class(name)(settings)


def provider_timeouts(name: str, settings) -> tuple[float, float]:
    """(first-token limit, total limit) in seconds for provider ``name``."""
    config = provider_class(name).settings_model.from_settings(settings)
    return config.first_token_timeout_s, config.total_timeout_s


__all__ = [
    "ERROR_KINDS", "PROVIDERS", "PROVIDER_NAMES", "AnthropicProvider", "ChatRequest", "ChatResult", "LocalProvider",
    "MalformedOutput", "Message", "OpenAIProvider", "Provider", "ProviderError", "ProviderName", "ProviderSettings",
    "ProviderTimeout", "RateLimited", "Refused", "Unavailable", "Usage", "build_provider", "collect",
    "provider_class", "provider_timeouts",
]

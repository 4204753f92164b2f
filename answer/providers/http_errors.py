"""HTTP failures mapped onto the provider error taxonomy, shared by the remote providers."""

from __future__ import annotations

import email.utils
import time

import httpx

from answer.providers.base import ProviderError, ProviderTimeout, RateLimited, Refused, Unavailable


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait, from ``retry-after-ms``, ``retry-after`` (seconds or an HTTP date)."""
    if "retry-after-ms" in headers:
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def error_for_status(provider: str, status: int, headers: httpx.Headers, body: str) -> ProviderError:
    snippet = " ".join(body.split())[:300]  # the body never holds our key; the request headers do
    message = f"HTTP {status} from {provider}: {snippet}"
    if status == 429:
        return RateLimited(message, provider, retry_after=parse_retry_after(headers))
    if status in (408, 504):
        return ProviderTimeout(message, provider)
    if status == 400 and ("content_filter" in body or "content_policy" in body):
        return Refused(message, provider)
    # 5xx and Anthropic's 529 (overloaded) are outages; 401/403/404 and other 4xx are configuration
    # errors that no retry of the same request fixes: both mean "try the next provider".
    return Unavailable(message, provider, retry_after=parse_retry_after(headers) if status >= 500 else None)


def error_for_transport(provider: str, exc: httpx.HTTPError, waiting_for_first_token: bool) -> ProviderError:
    if isinstance(exc, httpx.ConnectTimeout):
        return Unavailable(f"could not connect to {provider}: connection timed out", provider)
    if isinstance(exc, httpx.TimeoutException):
        what = "no first token" if waiting_for_first_token else "the stream stalled"
        return ProviderTimeout(f"{provider}: {what} within the read timeout ({type(exc).__name__})", provider)
    if isinstance(exc, httpx.ConnectError):
        return Unavailable(f"could not connect to {provider}: {exc}", provider)
    return Unavailable(f"{provider}: {type(exc).__name__}: {exc}", provider)


def client_timeout(first_token_timeout_s: float, total_timeout_s: float) -> httpx.Timeout:
    """Reads wait at most the first-token limit (a gap between later events that long is a stall too)."""
    return httpx.Timeout(connect=min(5.0, first_token_timeout_s), read=first_token_timeout_s,
                         write=min(10.0, total_timeout_s), pool=min(5.0, first_token_timeout_s))

"""``anthropic``: the Messages API (``POST /v1/messages``) over httpx, as JSON or as SSE events.

Stream events handled: message_start (input tokens), content_block_delta/text_delta (text),
message_delta (stop reason, output tokens), message_stop, ping, error. The API has no JSON-schema
output mode here: the prompt states the schema and the caller validates what comes back.
"""

from __future__ import annotations

import json
from typing import Iterator

import httpx

from answer.providers.base import (
    ChatRequest, ChatResult, Deadline, MalformedOutput, Message, ProviderError, ProviderTimeout, RateLimited,
    Refused, Tier, Unavailable, Usage, estimate_tokens,
)
from answer.providers.http_errors import client_timeout, error_for_status, error_for_transport
from answer.providers.sse import iter_sse
from attest_settings import AnthropicSettings

# Error types Anthropic sends inside a 200 stream (``event: error``), by our taxonomy.
_STREAM_ERRORS = {
    "overloaded_error": Unavailable,
    "api_error": Unavailable,
    "rate_limit_error": RateLimited,
    "timeout_error": ProviderTimeout,
}


class AnthropicProvider:
    settings_model = AnthropicSettings
    name = settings_model.name

    def __init__(self, settings, streaming: bool = True, transport: httpx.BaseTransport | None = None):
        self.config = self.settings_model.from_settings(settings)
        self.streaming = streaming
        self.base_url = self.config.base_url.rstrip("/")
        self._transport = transport

    def model_for(self, tier: Tier) -> str:
        if tier == "strong" and self.config.strong_model:
            return self.config.strong_model
        return self.config.model

    def count_tokens(self, messages: list[Message], model: str) -> int:
        # An estimate: the exact count needs a round trip (/v1/messages/count_tokens) before every call.
        return sum(estimate_tokens(m.content) + 4 for m in messages) + 3

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", "anthropic-version": self.config.version}
        if self.config.api_key is not None:
            headers["x-api-key"] = self.config.api_key.get_secret_value()
        return headers

    def _body(self, request: ChatRequest, model: str) -> dict:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        body: dict = {
            "model": model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages if m.role != "system"],
            "stream": self.streaming,
        }
        if system:
            body["system"] = system
        return body

    def stream(self, request: ChatRequest, model: str) -> Iterator[str]:
        deadline = Deadline(request, self.name)
        timeout = client_timeout(request.first_token_timeout_s, request.total_timeout_s)
        parts: list[str] = []
        usage = Usage(0, 0)
        stop_reason = None
        answered_model = model
        try:
            with httpx.Client(timeout=timeout, transport=self._transport) as client:
                with client.stream("POST", f"{self.base_url}/v1/messages", headers=self._headers(),
                                   json=self._body(request, model)) as response:
                    if response.status_code != 200:
                        body = response.read().decode("utf-8", "replace")
                        raise error_for_status(self.name, response.status_code, response.headers, body)
                    if not self.streaming:
                        message = _json(response.read(), self.name)
                        text, stop_reason, usage, answered_model = _parse_message(message, self.name, model)
                        if text:
                            deadline.mark_token()
                            parts.append(text)
                            yield text
                    else:
                        for event, data in iter_sse(response.iter_lines()):
                            payload = _json(data, self.name)
                            kind = payload.get("type", event)
                            if kind == "message_start":
                                message = payload.get("message") or {}
                                answered_model = message.get("model") or model
                                usage.prompt_tokens = int((message.get("usage") or {}).get("input_tokens") or 0)
                            elif kind == "content_block_delta":
                                delta = payload.get("delta") or {}
                                if delta.get("type") == "text_delta" and delta.get("text"):
                                    deadline.mark_token()
                                    parts.append(delta["text"])
                                    yield delta["text"]
                            elif kind == "message_delta":
                                stop_reason = (payload.get("delta") or {}).get("stop_reason") or stop_reason
                                out = (payload.get("usage") or {}).get("output_tokens")
                                if out is not None:
                                    usage.completion_tokens = int(out)
                            elif kind == "error":
                                error = payload.get("error") or {}
                                cls = _STREAM_ERRORS.get(error.get("type"), Unavailable)
                                raise cls(f"{self.name} stream error {error.get('type')}: {error.get('message')}",
                                          self.name)
                            elif kind == "message_stop":
                                break
                            deadline.check()
                        else:
                            if stop_reason is None:
                                raise MalformedOutput(f"{self.name} stream ended without message_stop", self.name)
        except ProviderError:
            raise
        except httpx.HTTPError as exc:
            raise error_for_transport(self.name, exc, deadline.first_token_s is None) from exc
        if stop_reason == "refusal":
            raise Refused(f"{self.name} refused to answer", self.name)
        text = "".join(parts)
        finish_reason = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}.get(
            stop_reason or "end_turn", stop_reason or "stop")
        return ChatResult(text=text, model=answered_model, usage=usage, finish_reason=finish_reason,
                          first_token_s=deadline.first_token_s, total_s=deadline.elapsed())


def _json(raw: bytes | str, provider: str) -> dict:
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedOutput(f"{provider} sent data that is not JSON: {str(raw)[:200]!r}", provider) from exc
    if not isinstance(value, dict):
        raise MalformedOutput(f"{provider} sent JSON that is not an object: {str(raw)[:200]!r}", provider)
    return value


def _parse_message(message: dict, provider: str, model: str) -> tuple[str, str | None, Usage, str]:
    if message.get("type") != "message" or not isinstance(message.get("content"), list):
        raise MalformedOutput(f"{provider} response is not a Messages API message", provider)
    text = "".join(block.get("text", "") for block in message["content"] if block.get("type") == "text")
    raw_usage = message.get("usage") or {}
    usage = Usage(int(raw_usage.get("input_tokens") or 0), int(raw_usage.get("output_tokens") or 0))
    return text, message.get("stop_reason"), usage, message.get("model") or model

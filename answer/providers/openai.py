"""``openai``: any OpenAI-compatible ``/v1/chat/completions`` endpoint over httpx, streamed with SSE.

Works with OpenAI, vLLM, Ollama, LM Studio, TGI and llama.cpp's server. How JSON output is requested
differs between them (``openai_response_format``): OpenAI's ``json_schema``; llama.cpp server's
``json_object`` with a ``schema``; plain ``json_object``; or nothing (the prompt carries the schema).
"""

from __future__ import annotations

import json
from typing import Iterator

import httpx

from answer.providers.base import (
    ChatRequest, ChatResult, Deadline, MalformedOutput, Message, ProviderError, Refused, Tier, Usage,
    estimate_tokens,
)
from answer.providers.http_errors import client_timeout, error_for_status, error_for_transport
from answer.providers.sse import iter_sse
from attest_settings import OpenAISettings


class OpenAIProvider:
    settings_model = OpenAISettings
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
        # No tokenizer for a remote model is available offline: a conservative estimate (about 3 chars/token).
        return sum(estimate_tokens(m.content) + 4 for m in messages) + 3

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.config.api_key is not None:
            headers["authorization"] = f"Bearer {self.config.api_key.get_secret_value()}"
        return headers

    def _body(self, request: ChatRequest, model: str) -> dict:
        body: dict = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": self.streaming,
        }
        if self.streaming:
            body["stream_options"] = {"include_usage": True}
        fmt = self.config.response_format
        if request.json_schema is not None and fmt != "none":
            if fmt == "json_schema":
                body["response_format"] = {"type": "json_schema",
                                           "json_schema": {"name": "answer", "schema": request.json_schema}}
            elif fmt == "json_object_schema":
                body["response_format"] = {"type": "json_object", "schema": request.json_schema}
            else:
                body["response_format"] = {"type": "json_object"}
        return body

    def stream(self, request: ChatRequest, model: str) -> Iterator[str]:
        deadline = Deadline(request, self.name)
        timeout = client_timeout(request.first_token_timeout_s, request.total_timeout_s)
        parts: list[str] = []
        usage: Usage | None = None
        finish_reason = "stop"
        try:
            with httpx.Client(timeout=timeout, transport=self._transport) as client:
                with client.stream("POST", f"{self.base_url}/chat/completions", headers=self._headers(),
                                   json=self._body(request, model)) as response:
                    if response.status_code != 200:
                        body = response.read().decode("utf-8", "replace")
                        raise error_for_status(self.name, response.status_code, response.headers, body)
                    if not self.streaming:
                        payload = _json(response.read(), self.name)
                        text, finish_reason, usage = _parse_completion(payload, self.name)
                        if text:
                            deadline.mark_token()
                            parts.append(text)
                            yield text
                    else:
                        for _event, data in iter_sse(response.iter_lines()):
                            if data.strip() == "[DONE]":
                                break
                            chunk = _json(data, self.name)
                            if "error" in chunk:
                                raise MalformedOutput(f"{self.name} stream error: {chunk['error']}", self.name)
                            if chunk.get("usage"):
                                usage = _usage(chunk["usage"])
                            for choice in chunk.get("choices") or []:
                                delta = choice.get("delta") or {}
                                if delta.get("refusal"):
                                    raise Refused(f"{self.name} refused: {delta['refusal']}", self.name)
                                content = delta.get("content") or ""
                                if content:
                                    deadline.mark_token()
                                    parts.append(content)
                                    yield content
                                if choice.get("finish_reason"):
                                    finish_reason = choice["finish_reason"]
                            deadline.check()
        except ProviderError:
            raise
        except httpx.HTTPError as exc:
            raise error_for_transport(self.name, exc, deadline.first_token_s is None) from exc
        if finish_reason == "content_filter":
            raise Refused(f"{self.name} stopped the answer with its content filter", self.name)
        text = "".join(parts)
        if usage is None:
            usage = Usage(self.count_tokens(request.messages, model), estimate_tokens(text) if text else 0,
                          reported=False)
        return ChatResult(text=text, model=model, usage=usage, finish_reason=finish_reason,
                          first_token_s=deadline.first_token_s, total_s=deadline.elapsed())


def _json(raw: bytes | str, provider: str) -> dict:
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedOutput(f"{provider} sent data that is not JSON: {str(raw)[:200]!r}", provider) from exc
    if not isinstance(value, dict):
        raise MalformedOutput(f"{provider} sent JSON that is not an object: {str(raw)[:200]!r}", provider)
    return value


def _usage(raw: dict) -> Usage:
    return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0))


def _parse_completion(payload: dict, provider: str) -> tuple[str, str, Usage | None]:
    try:
        choice = payload["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError) as exc:
        raise MalformedOutput(f"{provider} response has no choices[0].message", provider) from exc
    if message.get("refusal"):
        raise Refused(f"{provider} refused: {message['refusal']}", provider)
    usage = _usage(payload["usage"]) if payload.get("usage") else None
    return message.get("content") or "", choice.get("finish_reason") or "stop", usage

"""``local``: llama.cpp through llama-cpp-python with the packaged, sha256-verified GGUF weights.

One ``Llama`` instance per model per process (loading costs seconds and hundreds of MB); llama.cpp
contexts are not thread-safe, so calls into one model are serialised with a lock. The output shape is
forced with a JSON-schema grammar: without it the small Qwen models echo the passages back (DESIGN.md);
greedy decoding under it asks the grammar about the best token first (``llama_sampling``).
"""

from __future__ import annotations

import atexit
import threading
from pathlib import Path
from typing import Iterator

from answer.models import ModelWeightsError, ensure_model_file, parts_installed
from answer.providers.base import (
    ChatRequest, ChatResult, Deadline, Message, ProviderTimeout, Tier, Unavailable, Usage,
)
from attest_settings import LocalSettings

# Chat-template tokens per message (Qwen's <|im_start|>role\n ... <|im_end|>\n), plus the reply's header.
_TEMPLATE_TOKENS_PER_MESSAGE = 5
_REPLY_HEADER_TOKENS = 3


class LoadedModel:
    def __init__(self, name: str, path: Path, n_ctx: int, n_threads: int):
        from answer.providers.llama_sampling import FastGreedyLlama

        self.name = name
        self.llama = FastGreedyLlama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads,
                                     n_threads_batch=n_threads, n_batch=512, verbose=False)
        self.lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))


_models: dict[str, LoadedModel] = {}
_models_lock = threading.Lock()


def _close_models() -> None:
    # Free llama.cpp models before interpreter teardown; left to __del__, llama-cpp-python prints a
    # TypeError traceback at exit because the C bindings are already gone.
    with _models_lock:
        for loaded in _models.values():
            loaded.llama.close()
        _models.clear()


def load_model(name: str, models_dir: Path, n_ctx: int = 4096, n_threads: int = 2,
               weights: str = "shipped") -> LoadedModel:
    """The process-wide instance of ``name``, assembling and verifying its weights the first time."""
    with _models_lock:
        if not _models:
            atexit.register(_close_models)
        key = name if weights == "shipped" else f"{name}.{weights}"
        if key not in _models:
            path = ensure_model_file(name, models_dir, weights)
            _models[key] = LoadedModel(name, path, n_ctx, n_threads)
        return _models[key]


class LocalProvider:
    settings_model = LocalSettings
    name = settings_model.name

    def __init__(self, settings):
        self.settings = settings
        self.config = self.settings_model.from_settings(settings)

    def model_for(self, tier: Tier) -> str:
        if tier == "strong" and parts_installed(self.config.strong_model):
            return self.config.strong_model
        # The strong model is optional (its parts may not be installed): the fast one serves both tiers then.
        return self.config.model

    def _model(self, model: str) -> LoadedModel:
        try:
            return load_model(model, self.settings.models_dir, self.config.ctx, self.config.threads,
                              self.config.weights)
        except ModelWeightsError as exc:
            raise Unavailable(str(exc), self.name) from exc

    def count_tokens(self, messages: list[Message], model: str) -> int:
        loaded = self._model(model)
        return sum(loaded.count_tokens(m.content) + _TEMPLATE_TOKENS_PER_MESSAGE for m in messages) \
            + _REPLY_HEADER_TOKENS

    def stream(self, request: ChatRequest, model: str) -> Iterator[str]:
        loaded = self._model(model)  # loading is not counted against the request's limits
        deadline = Deadline(request, self.name)
        if not loaded.lock.acquire(timeout=min(deadline.remaining(), request.first_token_timeout_s)):
            raise ProviderTimeout(f"the local model {model} stayed busy with other requests", self.name)
        try:
            prompt_tokens = self.count_tokens(request.messages, model)
            if prompt_tokens + request.max_tokens > self.config.ctx:
                raise Unavailable(
                    f"prompt of {prompt_tokens} tokens plus {request.max_tokens} to generate exceeds the local "
                    f"context of {self.config.ctx} tokens", self.name)
            kwargs = {}
            if request.json_schema is not None:
                kwargs["response_format"] = {"type": "json_object", "schema": request.json_schema}
            chunks = loaded.llama.create_chat_completion(
                messages=[{"role": m.role, "content": m.content} for m in request.messages],
                max_tokens=request.max_tokens, temperature=request.temperature, stream=True, **kwargs,
            )
            parts: list[str] = []
            finish_reason = "stop"
            try:
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    delta = choice.get("delta", {}).get("content") or ""
                    if delta:
                        deadline.mark_token()
                        parts.append(delta)
                        yield delta
                    if choice.get("finish_reason"):
                        finish_reason = choice["finish_reason"]
                    deadline.check()
            finally:
                chunks.close()  # stops generation when we leave early (timeout, consumer gone)
            text = "".join(parts)
            usage = Usage(prompt_tokens, loaded.count_tokens(text), reported=False)
            return ChatResult(text=text, model=model, usage=usage, finish_reason=finish_reason,
                              first_token_s=deadline.first_token_s, total_s=deadline.elapsed())
        finally:
            loaded.lock.release()

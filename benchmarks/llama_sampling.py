"""Greedy grammar sampling against llama-cpp-python's sampler chain, side by side (not run by the tests).

    python benchmarks/llama_sampling.py [--model qwen2.5-coder-0.5b] [--questions 8] [--out r.json]

The demo golden questions' real answer prompts (hybrid-retrieved passages, the answer JSON grammar, as
``llama_settings.py`` builds them) are asked of two copies of the model, one after the other for each question:
``stock`` (llama_cpp.Llama: the grammar applied to the whole vocabulary at every token, then greedy) and
``fast`` (answer/providers/llama_sampling.FastGreedyLlama, what the local provider loads). Reported: p50
first-token, decode and total time and their ratios to stock, time per generated token spent sampling, and
whether the answer text is identical (it must be: the two pick the same token at every step).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "benchmarks"))  # after ROOT: benchmarks/answer.py must not shadow the package


def ask(llama, messages, max_tokens: int) -> dict:
    from answer.output import ANSWER_SCHEMA

    sampling = [0.0]
    sample = llama.sample

    def timed_sample(*args, **kwargs):
        started = time.perf_counter()
        try:
            return sample(*args, **kwargs)
        finally:
            sampling[0] += time.perf_counter() - started

    llama.sample = timed_sample
    started = time.perf_counter()
    first, parts = None, []
    try:
        for chunk in llama.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0,
                                                  stream=True,
                                                  response_format={"type": "json_object", "schema": ANSWER_SCHEMA}):
            delta = chunk["choices"][0].get("delta", {}).get("content") or ""
            if delta:
                first = first if first is not None else time.perf_counter() - started
                parts.append(delta)
    finally:
        del llama.sample
    total = time.perf_counter() - started
    text = "".join(parts)
    tokens = max(len(llama.tokenize(text.encode(), add_bos=False)), 1)
    return {"first_s": first or total, "decode_s": total - (first or total), "total_s": total,
            "sample_ms_per_token": 1000 * sampling[0] / tokens, "tokens": tokens, "text": text}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="local model name (default: ATTEST_LOCAL_MODEL)")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from llama_cpp import Llama

    from answer.models import ensure_model_file
    from answer.providers.llama_sampling import FastGreedyLlama
    from attest_settings import Settings
    from llama_settings import prompts

    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="attest-sampling-")))
    model = args.model or settings.local_model
    path = ensure_model_file(model, settings.data_dir / "cache" / "models")
    messages = prompts(settings, args.questions, 0)
    options = dict(model_path=str(path), n_ctx=settings.local_ctx, n_threads=2, n_threads_batch=2, n_batch=512,
                   verbose=False)
    loaded = {"stock": Llama(**options), "fast": FastGreedyLlama(**options)}
    results: dict[str, list[dict]] = {name: [] for name in loaded}
    for index, question in enumerate(messages):
        for name, llama in loaded.items():
            results[name].append(ask(llama, question, settings.answer_max_tokens))
        print(f"question {index + 1}/{len(messages)} done", file=sys.stderr, flush=True)

    def p50(name, key):
        return statistics.median(r[key] for r in results[name])

    report = {"model": model, "questions": len(messages), "configs": {}}
    print(f"{model}, {len(messages)} demo questions")
    print(f"{'sampler':8} {'first token':>16} {'decode':>16} {'total':>16} {'sample ms/token':>16} {'same text':>10}")
    for name in loaded:
        row = {key: round(p50(name, key), 3) for key in ("first_s", "decode_s", "total_s", "sample_ms_per_token")}
        for key in ("first_s", "decode_s", "total_s"):
            row[key + "_ratio"] = round(statistics.median(
                f[key] / s[key] for f, s in zip(results[name], results["stock"]) if s[key] > 0), 3)
        row["same_text"] = sum(f["text"] == s["text"] for f, s in zip(results[name], results["stock"]))
        report["configs"][name] = row
        print(f"{name:8} {row['first_s']:7.2f} s ({row['first_s_ratio']:.2f}) {row['decode_s']:7.2f} s "
              f"({row['decode_s_ratio']:.2f}) {row['total_s']:7.2f} s ({row['total_s_ratio']:.2f}) "
              f"{row['sample_ms_per_token']:16.1f} {row['same_text']:>6}/{len(messages)}")
    if args.out:
        report["answers"] = {name: [r["text"] for r in rows] for name, rows in results.items()}
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

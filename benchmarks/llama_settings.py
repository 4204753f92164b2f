"""llama.cpp's settings on this CPU, side by side, on the real answer prompts (not run by the tests).

    python benchmarks/llama_settings.py [--model qwen2.5-coder-0.5b] [--questions 8] [--condense 0] [--out r.json]

Every configuration below loads its own copy of the model; the demo golden questions' real prompts (answer
prompt, hybrid-retrieved passages, the answer JSON grammar) are then asked round-robin, one configuration
after the other for each question, so the machine's noise falls on all of them alike. Reported per
configuration: prompt tokens, first-token time (prefill), decode tokens/s, total time, p50 over the questions,
each as a ratio to ``base`` measured in the same run, and whether the answer text is identical to base's
(the same model at temperature 0 must say the same thing; a setting that changes answers is not "free").

Configurations (answer/providers/local.py uses ``base`` today):
- base: 2 threads, n_batch 512, f16 KV cache, flash attention off, the previous prompt's prefix reused (the
  system prompt is identical across questions, so llama-cpp-python evaluates only the rest);
- threads1, ubatch128: fewer threads, smaller micro-batches;
- flash: flash attention on; kv_q8: flash attention + 8-bit K/V cache;
- no_prefix: the KV cache reset before every call (what an un-cached system prompt costs);
- lookup: prompt-lookup decoding (LlamaPromptLookupDecoding, 10 draft tokens): answers that copy spans of
  the passages are drafted from the prompt itself;
- q8_0: the shipped Q4_K_M weights requantized to Q8_0 (ATTEST_LOCAL_WEIGHTS=q8_0).
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


def configurations(threads: int) -> dict[str, dict]:
    import llama_cpp
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    base = dict(n_threads=threads, n_threads_batch=threads, n_batch=512)
    return {
        "base": base,
        "threads1": {**base, "n_threads": 1, "n_threads_batch": 1},
        "ubatch128": {**base, "n_ubatch": 128},
        "flash": {**base, "flash_attn": True},
        "kv_q8": {**base, "flash_attn": True, "type_k": llama_cpp.GGML_TYPE_Q8_0, "type_v": llama_cpp.GGML_TYPE_Q8_0},
        "no_prefix": {**base, "_reset": True},
        # llama-cpp-python verifies drafted tokens against every position's logits: logits_all is required.
        "lookup": {**base, "draft_model": LlamaPromptLookupDecoding(num_pred_tokens=10), "logits_all": True},
        # The same weights requantized from the shipped Q4_K_M (ATTEST_LOCAL_WEIGHTS=q8_0): Q8_0 holds every
        # Q4_K value almost exactly. (Q4_0, measured once: as fast as Q8_0 but changed 5 of 6 answers.)
        "q8_0": {**base, "_weights": "q8_0"},
    }


def prompts(settings, limit: int, condense: int) -> list[list[dict]]:
    from answer.condense import condensed_views
    from answer.passages import NumberedPassages
    from answer.prompts import load_prompt
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester
    from retrieval.dense import get_dense_encoder
    from retrieval.search import Retriever
    from retrieval.store import EdgeStore

    encoder = get_dense_encoder()
    store = EdgeStore(settings.edge_dir)
    manifest = Manifest(settings.manifest_url)
    Ingester(settings, store, manifest, encoder).run([ROOT / "data" / "demo"])
    retriever = Retriever(settings, store, encoder)
    template = load_prompt(settings.answer_prompt)
    out = []
    for line in open(ROOT / "data" / "demo" / "golden.jsonl"):
        case = json.loads(line)
        vector = encoder.encode_query(case["question"])
        hits = retriever.search(case["question"], settings.collection, settings.answer_passages, "hybrid", None,
                                dense_vector=vector).hits
        views = condensed_views(case["question"], vector, NumberedPassages(hits), encoder, condense)
        out.append([{"role": m.role, "content": m.content} for m in template.render(case["question"], views)])
        if len(out) >= limit:
            break
    store.close()
    manifest.close()
    return out


def ask(llama, messages, reset: bool, max_tokens: int) -> dict:
    from answer.output import ANSWER_SCHEMA

    if reset:
        llama.reset()
    started = time.perf_counter()
    first = None
    parts = []
    for chunk in llama.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0, stream=True,
                                              response_format={"type": "json_object", "schema": ANSWER_SCHEMA}):
        delta = chunk["choices"][0].get("delta", {}).get("content") or ""
        if delta:
            first = first if first is not None else time.perf_counter() - started
            parts.append(delta)
    total = time.perf_counter() - started
    text = "".join(parts)
    tokens = len(llama.tokenize(text.encode(), add_bos=False))
    decode_s = max(total - (first or 0.0), 1e-6)
    return {"first_s": first or total, "total_s": total, "tokens": tokens, "decode_tps": tokens / decode_s,
            "text": text}


def compare(results: dict[str, list[dict]], base: str, heading: str) -> dict[str, dict]:
    """Per entry of ``results`` (answers to the same questions, in order): p50 first-token and total time, their
    ratios to ``base``'s, p50 decode tokens/s, and how many answer texts equal base's; printed as a table."""
    def p50(name, key):
        return statistics.median(r[key] for r in results[name])

    print(f"{heading:<10} {'first s':>8} {'ratio':>6} {'total s':>8} {'ratio':>6} {'decode t/s':>10} {'same text':>9}")
    rows = {}
    for name in results:
        same = sum(a["text"] == b["text"] for a, b in zip(results[name], results[base]))
        row = {"first_s_p50": round(p50(name, "first_s"), 3), "total_s_p50": round(p50(name, "total_s"), 3),
               "decode_tps_p50": round(p50(name, "decode_tps"), 2),
               "first_ratio": round(p50(name, "first_s") / p50(base, "first_s"), 3),
               "total_ratio": round(p50(name, "total_s") / p50(base, "total_s"), 3),
               "same_text": f"{same}/{len(results[base])}"}
        rows[name] = row
        print(f"{name:<10} {row['first_s_p50']:>8.2f} {row['first_ratio']:>6.2f} {row['total_s_p50']:>8.2f} "
              f"{row['total_ratio']:>6.2f} {row['decode_tps_p50']:>10.1f} {row['same_text']:>9}")
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="local model name (default: ATTEST_LOCAL_MODEL)")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--condense", type=int, default=0, help="sentences per passage (0: whole passages)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", default="", help="comma-separated subset (default: all)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from llama_cpp import Llama

    from answer.models import ensure_model_file
    from attest_settings import Settings

    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="attest-llama-")))
    model = args.model or settings.local_model
    path = ensure_model_file(model, settings.data_dir / "cache" / "models")
    messages = prompts(settings, args.questions, args.condense)
    configs = configurations(args.threads)
    if args.configs:
        configs = {k: v for k, v in configs.items() if k in args.configs.split(",") or k == "base"}
    loaded = {}
    for name, options in configs.items():
        weights = ensure_model_file(model, settings.data_dir / "cache" / "models", options.get("_weights", "shipped"))
        options = {k: v for k, v in options.items() if not k.startswith("_")}
        loaded[name] = Llama(model_path=str(weights), n_ctx=settings.local_ctx, verbose=False, **options)
    results: dict[str, list[dict]] = {name: [] for name in configs}
    for index, question in enumerate(messages):
        for name in configs:  # round-robin: every configuration meets the same moment of the machine's load
            results[name].append(ask(loaded[name], question, bool(configs[name].get("_reset")),
                                     settings.answer_max_tokens))
        print(f"question {index + 1}/{len(messages)} done", file=sys.stderr, flush=True)

    report = {"model": model, "questions": len(messages), "condense": args.condense, "threads": args.threads}
    print(f"{model}, {len(messages)} demo questions, condense {args.condense}")
    report["configs"] = compare(results, "base", "config")
    if args.out:
        report["answers"] = {name: [r["text"] for r in rows] for name, rows in results.items()}
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

"""Fine-tune the shipped claim verifier for composition errors (issue 13, deliverable 2). CPU, one thread.

    nohup python -m grounding.training.train_relations --out build/v2 > build/v2/stdout.log 2>&1 &

Starts from ``grounding/verifier/verifier.safetensors`` (which was trained on all 868 SciFact pairs, the
dev split's included) and trains one pass over a mix of:
- the composition examples of ``grounding.training.make_relations`` (``<data>/train.jsonl``; its
  ``dev.jsonl`` is never trained on: a small stratified part of it is scored at every checkpoint);
- the SciFact pairs outside the dev split (``scifact-dev-split.json``), evidence = the service's k = 3
  sentences (``grounding.training.prepare`` output), twice, plus their rule-based perturbations, so the
  verifier does not forget SciFact. Pairs whose abstract is also a dev pair's, and perturbations whose
  evidence comes from a dev abstract, are left out.

Checkpoints (model + optimiser + position) every ``--checkpoint-s`` seconds to ``<out>/ckpt.pt``;
``--resume`` continues from it. The final weights go to ``<out>/verifier.safetensors`` (fp16, every
parameter except the frozen word embeddings, as the shipped file) with ``<out>/train.json`` (facts).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from grounding.crossencoder import build_cross_encoder, minilm_path

ROOT = Path(__file__).resolve().parents[2]
SPLIT = Path(__file__).resolve().parent / "scifact-dev-split.json"
INIT = ROOT / "grounding" / "verifier"  # the shipped (v1) weights: where this run starts
SEED = 11


def _norm(s: str) -> str:
    return " ".join(s.lower().split())


def scifact_train_examples(prepared: Path, k: str = "3") -> tuple[list[tuple], dict]:
    split = json.loads(SPLIT.read_text())
    dev = set(split["dev"])
    pairs = [json.loads(l) for l in open(prepared / "pairs.jsonl")]
    augment = [json.loads(l) for l in open(prepared / "augment.jsonl")]
    dev_contexts = [_norm(p["context"]) for p in pairs if p["id"] in dev]
    dev_context_set = set(dev_contexts)
    train_pairs = [p for p in pairs if p["id"] not in dev and _norm(p["context"]) not in dev_context_set]
    kept_ids = {p["id"] for p in train_pairs}
    dev_blob = "\n".join(dev_contexts)

    def from_dev_abstract(evidence: str) -> bool:
        sentences = [s for s in evidence.split(". ") if len(s) > 30]
        return any(_norm(s)[:120] in dev_blob for s in sentences[:2])

    aug = [a for a in augment if a["src"] in kept_ids and not from_dev_abstract(a["evidence"])]
    ex = [(p["claim"], p["evidence"][k], p["label"], "scifact_pair") for p in train_pairs] * 2
    ex += [(a["claim"], a["evidence"], 0, f"scifact_{a['aug']}") for a in aug]
    facts = {"scifact_pairs_train": len(train_pairs),
             "scifact_pairs_left_out_sharing_a_dev_abstract": len(pairs) - len(dev) - len(train_pairs),
             "scifact_perturbations": len(aug),
             "scifact_perturbations_left_out": sum(1 for a in augment if a["src"] in kept_ids) - len(aug)}
    return ex, facts


def load_init(model) -> None:
    from safetensors.torch import load_file

    state = {k: v.float() for k, v in load_file(str(INIT / "verifier.safetensors")).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"bert.embeddings.word_embeddings.weight"}, (missing, unexpected)


def tokenize(tokenizer, chunk, max_len):
    claims = [c for c, *_ in chunk]
    evidence = [e or "(no evidence)" for _, e, *_ in chunk]
    try:
        return tokenizer(claims, evidence, truncation="only_second", max_length=max_len, padding=True,
                         return_tensors="pt")
    except Exception:  # a claim longer than max_len on its own
        return tokenizer(claims, evidence, truncation="longest_first", max_length=max_len, padding=True,
                         return_tensors="pt")


@torch.inference_mode()
def predict(model, tokenizer, examples, max_len, batch=32) -> list[float]:
    was = model.training
    model.eval()
    out = []
    for s in range(0, len(examples), batch):
        enc = tokenize(tokenizer, examples[s:s + batch], max_len)
        out += model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).float().tolist()
    model.train(was)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "build" / "relations")
    parser.add_argument("--prepared", type=Path, default=ROOT / "build" / "gpu")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "v2")
    parser.add_argument("--relations", type=int, default=14000, help="composition examples to train on")
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--time-cap-s", type=float, default=3300)
    parser.add_argument("--checkpoint-s", type=float, default=300)
    parser.add_argument("--watch", type=int, default=240)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--init", choices=("shipped", "base"), default="shipped",
                        help="start from the shipped verifier (which saw every SciFact pair, the dev split's too) "
                             "or from the base MiniLM with a fresh head (a fair run: no dev pair seen at any stage)")
    args = parser.parse_args(argv)

    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoTokenizer

    from grounding.training.train_verifier import auroc

    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    rng = random.Random(SEED)
    args.out.mkdir(parents=True, exist_ok=True)
    logf = open(args.out / "train.log", "a")

    def log(msg):
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    rel = [json.loads(l) for l in open(args.data / "train.jsonl")]
    rel = rel[: args.relations]  # the file is shuffled (seeded)
    sci, sci_facts = scifact_train_examples(args.prepared)
    examples = [(r["claim"], r["evidence"], r["label"], r["kind"]) for r in rel] + sci
    rng.shuffle(examples)
    dev = [json.loads(l) for l in open(args.data / "dev.jsonl")]
    by_kind: dict[str, list] = {}
    for r in dev:
        by_kind.setdefault(r["kind"], []).append(r)
    watch = []
    for kind, rows in sorted(by_kind.items()):
        take = max(4, round(args.watch * len(rows) / len(dev)))
        watch += random.Random(3).sample(rows, min(take, len(rows)))
    watch_ex = [(r["claim"], r["evidence"], r["label"]) for r in watch]

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    model = build_cross_encoder(minilm_path())
    if args.init == "shipped":
        load_init(model)
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    steps = math.ceil(len(examples) / args.batch)
    warm = max(1, int(0.03 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min(1.0, (s + 1) / warm) * max(0.05, (steps - s) / max(1, steps - warm)))
    pos = sum(1 for e in examples if e[2] == 1)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor((len(examples) - pos) / max(pos, 1)))
    step, elapsed_before = 0, 0.0
    ckpt = args.out / "ckpt.pt"
    if args.resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
        step, elapsed_before = state["step"], state["elapsed"]
        log(f"resumed at step {step}")
    facts = {"examples": len(examples), "by_kind": dict(Counter(e[3] for e in examples)),
             "labels": dict(Counter(e[2] for e in examples)), **sci_facts, "max_len": args.max_len,
             "batch": args.batch, "lr": args.lr, "seed": SEED, "threads": args.threads, "planned_steps": steps,
             "init": args.init,
             "watch": len(watch_ex)}
    log(json.dumps(facts))
    if step == 0:
        w = predict(model, tokenizer, watch_ex, args.max_len)
        log(f"watch AUROC at start ({args.init} weights): {auroc([e[2] for e in watch_ex], w):.4f}")

    def save(final=False):
        torch.save({"model": model.state_dict(), "optim": optim.state_dict(), "sched": sched.state_dict(),
                    "step": step, "elapsed": elapsed_before + time.time() - started}, str(ckpt) + ".tmp")
        os.replace(str(ckpt) + ".tmp", ckpt)
        from safetensors.torch import save_file

        state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()
                 if k != "bert.embeddings.word_embeddings.weight"}
        save_file(state, str(args.out / "verifier.safetensors"))
        seconds = elapsed_before + time.time() - started
        w = predict(model, tokenizer, watch_ex, args.max_len)
        wa = auroc([e[2] for e in watch_ex], w)
        (args.out / "train.json").write_text(json.dumps({**facts, "steps_done": step, "examples_seen": step * args.batch,
                                                         "seconds": round(seconds, 1), "finished": final,
                                                         "watch_auroc": round(wa, 4),
                                                         "examples_per_s": round(step * args.batch / max(seconds, 1), 2)},
                                                        indent=1))
        log(f"checkpoint step {step}/{steps} ({step * args.batch} examples, {seconds:.0f} s, "
            f"{step * args.batch / max(seconds, 1):.2f} ex/s) watch AUROC {wa:.4f}")

    model.train()
    started = time.time()
    last_ckpt = time.time()
    running, n_running = 0.0, 0
    while step < steps:
        chunk = examples[step * args.batch:(step + 1) * args.batch]
        enc = tokenize(tokenizer, chunk, args.max_len)
        y = torch.tensor([float(e[2]) for e in chunk])
        logits = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        loss = loss_fn(logits, y)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        sched.step()
        step += 1
        running, n_running = running + float(loss), n_running + 1
        if step % 25 == 0:
            log(f"step {step}/{steps} loss {running / n_running:.4f} lr {sched.get_last_lr()[0]:.2e} "
                f"{step * args.batch / (elapsed_before + time.time() - started):.2f} ex/s")
            running, n_running = 0.0, 0
        if time.time() - last_ckpt >= args.checkpoint_s:
            save()
            last_ckpt = time.time()
        if elapsed_before + time.time() - started >= args.time_cap_s:
            log("time cap reached")
            break
    save(final=True)
    log("done")


if __name__ == "__main__":
    main()

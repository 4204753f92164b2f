"""What each answer-judge threshold would have served, from one answers_dev run (not run by the tests).

    python benchmarks/answer_judge_sweep.py run.json [--thresholds 0.3,0.4,0.5,0.6,0.7]

Run answers_dev once with the answer judge on and a threshold under every one to compare (e.g.
``--env 'ATTEST_GROUNDING_ANSWER_JUDGE_RISKS=["low","high"]' --env
'ATTEST_GROUNDING_ANSWER_JUDGE_THRESHOLDS={"low":0.01}'``): every answer that passes the other checks is
served and its P(yes) recorded in ``answer_check.judge_p``. The judge is the last check and a failing one
declines without regenerating (grounding/decide.py), so an answer is shown at threshold t exactly when it
was shown in the run and its P(yes) >= t: one run gives every threshold's outcome, same drafts, no noise
between them. Prints answers_dev's table, one row per threshold, after the run as it would have been with
the judge off: every answer the judge read shown, its latency less the judge's own time (``answer_judge_ms``
in the response's timings). ``--replayed R --form F`` puts another judge form's P(yes) in the recorded one's
place, from answer_judge_replay's output for the same run (the same drafts, judged as form F would).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from answers_dev import summarise  # noqa: E402


def at_threshold(row: dict, threshold: float) -> dict:
    p = (row.get("answer_check") or {}).get("judge_p")
    if "error" in row or row["declined"] or p is None or p >= threshold:
        return row
    return {**row, "shown": False, "declined": True, "correct": False, "em": 0.0, "f1": 0.0}


def with_replayed(rows: list[dict], replayed: list[dict], form: str) -> list[dict]:
    """The run's rows with the judge's P(yes) that ``form`` gave each answer in the replay (matched by question
    and collection). The replay holds every answer the run showed at low risk, which at the run's threshold
    under every one is every answer the judge read, less the demo's answerable ones it has no labels for: those
    keep their recorded P(yes)."""
    p_of = {(r["question"], r["collection"]): r["p"][form] for r in replayed}
    out = []
    for row in rows:
        check = row.get("answer_check") or {}
        if check.get("judge_p") is not None and row.get("risk") == "low":
            p = p_of.get((row["question"], row["collection"]), check["judge_p"])
            row = {**row, "answer_check": {**check, "judge_p": p}}
        out.append(row)
    return out


def judge_off(row: dict) -> dict:
    """The row as the judge-off server would have answered it: shown as the run showed it, the judge's time
    taken off (the judge is the last step, so nothing else changes)."""
    judge_ms = (row.get("timings_ms") or {}).get("answer_judge_ms", 0.0)
    return {**row, "seconds": row["seconds"] - judge_ms / 1000} if "seconds" in row else row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="an answers_dev --out file")
    parser.add_argument("--thresholds", default="0.3,0.4,0.5,0.55,0.6,0.7")
    parser.add_argument("--replayed", type=Path, help="answer_judge_replay's --out for this run")
    parser.add_argument("--form", help="the replayed form whose P(yes) replaces the recorded one")
    args = parser.parse_args()
    rows = json.loads(args.run.read_text())
    if args.replayed:
        rows = with_replayed(rows, json.loads(args.replayed.read_text()), args.form)
    recorded = [r["answer_check"]["judge_p"] for r in rows if (r.get("answer_check") or {}).get("judge_p") is not None]
    print(f"{len(rows)} rows, {len(recorded)} with the judge's P(yes)")
    print("\n".join(summarise([judge_off(r) for r in rows], "judge off")))
    for threshold in (float(t) for t in args.thresholds.split(",")):
        print("\n".join(summarise([at_threshold(r, threshold) for r in rows], f"judge >= {threshold:g}")))


if __name__ == "__main__":
    main()

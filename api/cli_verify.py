"""``attest verify``: check claims against contexts with the service's verifier (the benchmark interface).

Input, one JSON object per line: ``{"id": ..., "claim": "...", "context": "..."}``.
Output, one per input line, in order: ``{"id": ..., "supported": true|false, "score": 0..1, "signals": {...}}``.
The context is the claim's only evidence. Keep this interface stable: benchmarks/grounding.py reads it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

console = Console(stderr=True, soft_wrap=True)


def _read_pairs(path: Path) -> list[dict]:
    rows = []
    text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number}: not JSON ({exc.msg})") from None
        missing = [k for k in ("id", "claim", "context") if k not in row]
        if missing:
            raise ValueError(f"line {number}: missing {', '.join(missing)} (each line needs id, claim, context)")
        if not isinstance(row["claim"], str) or not isinstance(row["context"], str):
            raise ValueError(f"line {number}: claim and context must be strings")
        rows.append(row)
    return rows


def verify_command(
    input: Path = typer.Option(..., "--input", "-i", help="JSONL file of {id, claim, context} ('-' for stdin)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write the results (default stdout)."),
    risk: str = typer.Option("low", "--risk", help="Threshold to apply: low | high."),
    batch: int = typer.Option(16, "--batch", min=1, max=256, help="Claims scored together."),
):
    """Verify claims against contexts: is each claim supported by its context?"""
    import time

    from pydantic import ValidationError

    from attest_settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        console.print(f"[red]invalid configuration:[/red] {exc}")
        raise typer.Exit(2)
    try:
        pairs = _read_pairs(input)
    except (OSError, ValueError) as exc:
        console.print(f"[red]cannot read {input}:[/red] {exc}")
        raise typer.Exit(2)

    from grounding.verifier import ClaimScorer

    try:
        scorer = ClaimScorer.from_settings(settings)
        threshold = scorer.threshold(risk)
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2)

    out = open(output, "w", encoding="utf-8") if output else sys.stdout
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    started = time.perf_counter()
    supported = 0
    progress = Progress(TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not console.is_terminal)
    try:
        with progress:
            task = progress.add_task("claims", total=len(pairs), rate="")
            done = 0
            for start in range(0, len(pairs), batch):
                chunk = pairs[start:start + batch]
                scored = scorer.score_pairs([(p["claim"], p["context"]) for p in chunk], risk=risk)
                for row, s in zip(chunk, scored):
                    ok = s.score >= threshold
                    supported += ok
                    signals = {k: round(float(v), 4) for k, v in s.signals.items()}
                    if s.vetoes:
                        signals["veto"] = 1.0
                    out.write(json.dumps({"id": row["id"], "supported": bool(ok), "score": round(s.score, 4),
                                          "signals": signals}) + "\n")
                out.flush()
                done += len(chunk)
                elapsed = time.perf_counter() - started
                progress.update(task, completed=done, rate=f"{done / elapsed:.1f} claims/s" if elapsed else "")
    finally:
        if output:
            out.close()
    elapsed = time.perf_counter() - started
    console.print(f"verified {len(pairs)} claim(s): {supported} supported, {len(pairs) - supported} unsupported "
                  f"(risk {risk}, threshold {threshold:.3f}, {scorer.model_name(risk)}); "
                  f"{len(pairs) / elapsed if elapsed else 0:.1f} claims/s")

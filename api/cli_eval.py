"""``attest eval ...``: measuring retrieval (and, later, the whole pipeline) on benchmark data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from attest_settings import Risk

eval_app = typer.Typer(no_args_is_help=True, help="Measure quality on benchmark data and golden sets.")
console = Console(stderr=True, soft_wrap=True)
ALL_MODES = ["dense", "bm25", "hybrid", "rerank"]


def _print_report(report) -> None:
    metrics = list(next(iter(report.modes.values())).keys()) if report.modes else []
    table = Table(title=f"{report.dataset} ({report.queries} queries, collection {report.collection})")
    table.add_column("mode")
    for metric in metrics:
        table.add_column(metric, justify="right")
    table.add_column("p50 ms", justify="right")
    for mode, scores in report.modes.items():
        table.add_row(mode, *(f"{scores[m]:.4f}" for m in metrics), f"{report.latency_ms[mode]['p50']:.1f}")
    Console(width=200).print(table)


@eval_app.command("retrieval")
def eval_retrieval(
    beir: Optional[Path] = typer.Option(None, "--beir", help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv)."),
    golden: Optional[Path] = typer.Option(None, "--golden", help="A golden set (JSONL with question, doc_ids, passages)."),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="Documents of the golden set (default: its folder)."),
    mode: list[str] = typer.Option([], "--mode", help="dense | bm25 | hybrid | rerank (repeatable; default: all)."),
    collection: Optional[str] = typer.Option(None, "--collection", "-c", help="Collection to (re)use."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write the JSON report."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON report on stdout."),
):
    """nDCG@10, recall@10/@100, MRR@10 and ragas context metrics per retrieval mode."""
    from rich.progress import Progress

    from api.cli import _open_store, _settings
    from evaluation.retrieval_eval import (
        ensure_beir_collection, evaluate_beir, evaluate_golden, load_golden,
    )
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester
    from retrieval.search import Mode, Retriever

    if (beir is None) == (golden is None):
        console.print("[red]give exactly one of --beir DIR or --golden FILE[/red]")
        raise typer.Exit(2)
    try:
        modes = [Mode.parse(m).value for m in (mode or ALL_MODES)]
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2)
    settings = _settings()
    store = _open_store(settings)
    manifest = Manifest(settings.manifest_url)
    try:
        ingester = Ingester(settings, store, manifest)
        retriever = Retriever(settings, store, ingester.encoder)
        with Progress(console=console, transient=True) as progress:
            if beir is not None:
                name = collection or f"beir-{beir.resolve().name.removeprefix('beir-')}"
                task = progress.add_task(f"ingesting {beir}", total=None)
                dataset, _ = ensure_beir_collection(ingester, beir, name)
                progress.update(task, total=1, completed=1)
                task = progress.add_task("queries", total=len(dataset.queries) * len(modes))
                report = evaluate_beir(retriever, dataset, name, modes, on_query=lambda: progress.advance(task))
            else:
                cases = load_golden(golden)
                folder = corpus or golden.parent
                name = collection or f"eval-{folder.resolve().name}"
                ingester.run([folder], collection=name)
                task = progress.add_task("queries", total=len(cases) * len(modes))
                report = evaluate_golden(retriever, cases, name, modes, on_query=lambda: progress.advance(task))
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2)
    finally:
        store.close()
        manifest.close()
    data = report.to_dict()
    out = output or settings.data_dir / "reports" / f"retrieval-{report.dataset.replace('/', '-')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2))
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        _print_report(report)
        console.print(f"report written to {out}")


@eval_app.command("golden")
def eval_golden(
    golden: Path = typer.Option(Path("data/demo/golden.jsonl"), "--golden", help="Golden set (JSONL)."),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="Its documents (default: the golden file's folder)."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="A committed report to gate against."),
    max_drop: float = typer.Option(0.02, "--max-drop", help="Largest relative drop of a headline score that passes."),
    risk: Risk = typer.Option("low", "--risk", help="The risk level asked at."),
    limit: int = typer.Option(0, "--limit", min=0, help="Only the first N cases (0 = all)."),
    collection: Optional[str] = typer.Option(None, "--collection", "-c"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Folder for the JSON and Markdown reports."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON report on stdout."),
    ragas: bool = typer.Option(False, "--ragas", help="Also score ragas Faithfulness with a local model as ragas' "
                                                       "LLM (slow: 30-60 s per answer on 2 cores)."),
    ragas_model: Optional[str] = typer.Option(None, "--ragas-model",
                                              help="The local model for --ragas (default: the strong local model)."),
):
    """Run retrieve -> answer -> verify on a golden set, score every case, and gate against a baseline."""
    from rich.progress import Progress

    from api.cli import _open_store, _settings
    from api.question import QuestionPath
    from evaluation.golden import (
        GoldenReport, RunHistory, embedding_similarity, markdown_report, outcome_from_response,
        regression_gate, run_golden,
    )
    from evaluation.retrieval_eval import load_golden
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester

    try:
        cases = load_golden(golden)
        base = GoldenReport.from_dict(json.loads(baseline.read_text())) if baseline else None
    except (OSError, ValueError, TypeError) as exc:
        console.print(f"[red]cannot read the golden set or baseline: {exc}[/red]")
        raise typer.Exit(2)
    cases = cases[:limit] if limit else cases
    settings = _settings()
    store = _open_store(settings)
    manifest = Manifest(settings.manifest_url)
    folder = corpus or golden.parent
    name = collection or f"eval-{folder.resolve().name}"
    path = None
    try:
        ingester = Ingester(settings, store, manifest)
        ingester.run([folder], collection=name)
        path = QuestionPath.build(settings, store, ingester.encoder)
        ask = lambda q: outcome_from_response(path.ask(q, collection=name, risk=risk))  # noqa: E731
        ragas_score = None
        if ragas:
            from evaluation.ragas_faithfulness import RagasFaithfulness

            ragas_score = RagasFaithfulness.load(ragas_model or settings.local_strong_model, settings.models_dir,
                                                 settings.local_ctx, settings.local_threads).score
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("golden cases", total=len(cases))
            report = run_golden(cases, ask, golden.name, embedding_similarity(ingester.encoder),
                                on_case=lambda: progress.advance(task), ragas=ragas_score)
    finally:
        if path is not None:
            path.close()
        store.close()
        manifest.close()

    gate = regression_gate(report, base, max_drop) if base else None
    history = RunHistory(settings.state_url)
    history.record(report)
    history.close()
    out = output or settings.data_dir / "reports"
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"golden-{report.run_id}.json"
    json_path.write_text(json.dumps(report.to_dict(), indent=2))
    (out / f"golden-{report.run_id}.md").write_text(markdown_report(report, gate))
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        table = Table(title=f"{golden.name}: {len(report.cases)} cases, run {report.run_id}")
        table.add_column("score")
        table.add_column("value", justify="right")
        if base:
            table.add_column("baseline", justify="right")
        for key, value in report.scores.items():
            row = [key, f"{value:.4f}"] + ([f"{base.scores.get(key, 0):.4f}"] if base else [])
            table.add_row(*row)
        Console(width=120).print(table)
        console.print(f"latency p50 {report.latency_ms['p50']:.0f} ms, p95 {report.latency_ms['p95']:.0f} ms; "
                      f"decisions {report.decisions}; report {json_path}")
    if gate is not None:
        console.print(gate.describe())
        if not gate.passed:
            raise typer.Exit(1)


@eval_app.command("history")
def eval_history(golden: Optional[str] = typer.Option(None, "--golden", help="Only runs of this golden file name.")):
    """The trend of the headline scores over stored golden runs."""
    from api.cli import _settings
    from evaluation.golden import HEADLINE, RunHistory

    settings = _settings()
    history = RunHistory(settings.state_url)
    runs = history.runs(golden)
    history.close()
    _print_quality(settings)
    if not runs:
        console.print("no golden runs stored yet: run `attest eval golden` first")
        return
    table = Table(title="golden runs")
    for column in ("when", "run", "golden", "commit", "prompts") + HEADLINE + ("p50 ms",):
        table.add_column(column)
    previous = None
    for run in runs:
        cells = []
        for key in HEADLINE:
            value = run["scores"].get(key, 0.0)
            arrow = "" if previous is None else ("↑" if value > previous.get(key, 0) + 1e-9 else "↓" if value < previous.get(key, 0) - 1e-9 else "=")
            cells.append(f"{value:.3f}{arrow}")
        table.add_row(run["created_at"], run["run_id"], run["golden"], run["git_commit"], ",".join(run["prompts"]),
                      *cells, f"{run['latency_p50_ms']:.0f}")
        previous = run["scores"]
    Console(width=220).print(table)


def _print_quality(settings) -> None:
    """Served answers' quality over time: the judge's mean score per day (review/quality.py)."""
    from review.store import ReviewStore

    store = ReviewStore(settings.state_url)
    try:
        days = store.quality_by_day()
    finally:
        store.close()
    if not days:
        return
    table = Table(title="served answers' quality (quality judge, after delivery)")
    for column in ("day", "answers judged", "mean score"):
        table.add_column(column)
    for day in days:
        table.add_row(day["day"], str(day["answers"]), f"{day['mean_score']:.3f}")
    Console(width=120).print(table)

"""``attest eval ...``: measuring retrieval (and, later, the whole pipeline) on benchmark data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

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
    manifest = Manifest(settings.manifest_path)
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

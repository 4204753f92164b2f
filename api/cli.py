"""The ``attest`` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="attest: answers from your documents, every claim checked before it is served.")
console = Console(stderr=True, soft_wrap=True)


def _settings():
    from pydantic import ValidationError

    from attest_settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        console.print(f"[red]invalid configuration:[/red] {exc}")
        raise typer.Exit(2)


def _open_store(settings):
    from retrieval.store import StoreLockedError, open_store

    try:
        return open_store(settings)
    except StoreLockedError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(3)


class _RichProgress:
    """Files and chunks with a chunks/s rate, on a terminal only."""

    def __init__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=console)
        self.files = self.progress.add_task("files", total=None, rate="")
        self.chunks = self.progress.add_task("chunks", total=None, rate="")
        self.count = 0

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def start(self, files: int) -> None:
        self.progress.update(self.files, total=files)

    def file_done(self, path: str) -> None:
        self.progress.advance(self.files)

    def chunks_done(self, n: int) -> None:
        self.count += n
        task = self.progress.tasks[self.chunks]
        rate = f"{self.count / task.elapsed:.1f} chunks/s" if task.elapsed else ""
        self.progress.update(self.chunks, completed=self.count, total=self.count, rate=rate)


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., help="Files or folders to ingest (folders are walked recursively)."),
    collection: Optional[str] = typer.Option(None, "--collection", "-c", help="Target collection."),
    tag: list[str] = typer.Option([], "--tag", "-t", help="Tag every ingested chunk (repeatable)."),
    prune: bool = typer.Option(False, "--prune", help="Delete the chunks of files that are gone from these folders."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Read and chunk, but write nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout."),
):
    """Read documents, chunk them, embed them and write them to the index."""
    from contextlib import nullcontext

    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester

    settings = _settings()
    store = _open_store(settings)
    manifest = Manifest(settings.manifest_path)
    show_bar = sys.stderr.isatty() and not as_json
    try:
        ingester = Ingester(settings, store, manifest)
        bar = _RichProgress() if show_bar else None
        with bar or nullcontext():
            report = ingester.run(paths, collection, tag, prune=prune, dry_run=dry_run, progress=bar)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2)
    finally:
        store.close()
        manifest.close()
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        verb = "would ingest" if dry_run else "ingested"
        console.print(
            f"{verb} {report.files_ingested} file(s), {report.files_unchanged} unchanged, {report.files_failed} failed "
            f"({report.files_skipped_unsupported} unsupported and {report.files_skipped_hidden} hidden skipped); "
            f"chunks written {report.chunks_written}, deleted {report.chunks_deleted}"
            + (f", documents pruned {report.documents_pruned}" if prune else "")
            + f"; {report.seconds:.1f} s"
        )
        for failure in report.failures:
            console.print(f"[yellow]skipped[/yellow] {failure['path']}: {failure['reason']}")
    if report.nothing_readable and report.files_failed:
        console.print("[red]nothing could be read[/red]")
        raise typer.Exit(1)
    if report.files_seen == 0 and report.files_failed == 0 and not prune:
        console.print("[red]no supported files found[/red] (supported: .md .markdown .txt .pdf .docx .html .htm)")
        raise typer.Exit(1)


@app.command()
def search(
    query: str = typer.Argument(..., help="What to look for."),
    k: int = typer.Option(10, "-k", "--top-k", min=1, max=100, help="How many hits."),
    mode: str = typer.Option("hybrid", "--mode", help="dense | bm25 | hybrid | rerank"),
    collection: Optional[str] = typer.Option(None, "--collection", "-c"),
    source: list[str] = typer.Option([], "--source", help="Only these sources (repeatable)."),
    tag: list[str] = typer.Option([], "--tag", "-t", help="Only chunks with one of these tags (repeatable)."),
    doc_id: list[str] = typer.Option([], "--doc-id", help="Only these documents (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print the hits as JSON on stdout."),
):
    """Search the index and print the best-matching chunks."""
    from retrieval.search import Retriever

    settings = _settings()
    store = _open_store(settings)
    try:
        filters = {k_: v for k_, v in {"source": source, "tags": tag, "doc_id": doc_id}.items() if v}
        result = Retriever(settings, store).search(query, collection, k, mode, filters)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2)
    finally:
        store.close()
    if as_json:
        print(json.dumps({"hits": [h.to_dict() for h in result.hits], "timings_ms": result.timings_ms}, indent=2))
        return
    table = Table(show_lines=True)
    for column in ("#", "score", "document", "text"):
        table.add_column(column)
    for rank, hit in enumerate(result.hits, start=1):
        where = hit.doc_id + (f" p.{hit.page}" if hit.page else "")
        text = hit.text if len(hit.text) <= 300 else hit.text[:300] + "…"
        table.add_row(str(rank), f"{hit.score:.3f}", where, text)
    Console().print(table)
    if not result.hits:
        console.print("no results")


from api.cli_eval import eval_app  # noqa: E402  (registered after the commands above)

app.add_typer(eval_app, name="eval")

if __name__ == "__main__":
    app()

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
    from retrieval.store import open_store

    # The embedded shard is locked lazily, on first use: main() turns that StoreLockedError into advice.
    return open_store(settings)


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
    from retrieval.store import StoreLockedError

    settings = _settings()
    store = _open_store(settings)
    manifest = Manifest(settings.manifest_path)
    show_bar = sys.stderr.isatty() and not as_json
    try:
        ingester = Ingester(settings, store, manifest)
        bar = _RichProgress() if show_bar else None
        with bar or nullcontext():
            report = ingester.run(paths, collection, tag, prune=prune, dry_run=dry_run, progress=bar)
    except StoreLockedError:
        # `attest serve` holds the index: send the files through it (or say plainly what to do).
        from api.server_lock import handle_locked_store

        raise typer.Exit(handle_locked_store(settings, "ingest", list(paths), collection,
                                             echo=lambda line: console.print(line, markup=False)))
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
from api.cli_verify import verify_command  # noqa: E402
app.command("verify")(verify_command)

@app.command()
def ask(
    question: str = typer.Argument(..., help="The question to answer from the indexed documents."),
    provider: list[str] = typer.Option([], "--provider", "-p",
                                       help="Provider(s) to try, in order: local | openai | anthropic (repeatable; "
                                            "default: ATTEST_ANSWER_PROVIDERS)."),
    k: int = typer.Option(5, "-k", "--top-k", min=1, max=20, help="Passages given to the model."),
    collection: Optional[str] = typer.Option(None, "--collection", "-c"),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the semantic cache."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole result as JSON on stdout."),
):
    """Answer a question with citations: retrieve (hybrid), route, generate, validate.

    Claims are not verified here yet (that is the grounding stage's job).
    """
    import time

    from answer import AnswerPipeline
    from answer.providers import PROVIDER_NAMES
    from retrieval.search import Retriever

    settings = _settings()
    unknown = [p for p in provider if p not in PROVIDER_NAMES]
    if unknown:
        console.print(f"[red]unknown provider {unknown[0]!r}:[/red] valid providers are {', '.join(PROVIDER_NAMES)}")
        raise typer.Exit(2)
    settings = settings.model_copy(update={"answer_passages": k})
    store = _open_store(settings)
    pipeline = None
    try:
        retriever = Retriever(settings, store)
        started = time.perf_counter()
        vector = retriever.encoder.encode_query(question, threads=settings.query_threads) if question.strip() else None
        search = retriever.search(question, collection, k, "hybrid", dense_vector=vector)
        retrieve_ms = round((time.perf_counter() - started) * 1000, 1)
        pipeline = AnswerPipeline(settings, store, encoder=retriever.encoder)
        result = pipeline.answer(question, search.hits, collection=collection, providers=provider or None,
                                 question_vector=vector, use_cache=not no_cache, remember=not no_cache)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2)
    finally:
        if pipeline is not None:
            pipeline.close()
        store.close()
    result.timings_ms = {"retrieve_ms": retrieve_ms, **{f"retrieve_{k_}": v for k_, v in search.timings_ms.items()},
                         **result.timings_ms}
    result.timings_ms["total_ms"] = round(retrieve_ms + result.timings_ms.get("total_ms", 0.0), 1)
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        _print_answer(result)
    if result.status in ("unavailable", "over_budget"):
        raise typer.Exit(1)


def _print_answer(result) -> None:
    out = Console(soft_wrap=True)
    out.print(result.answer)
    if result.notice and result.notice != result.answer:
        out.print(f"[yellow]note:[/yellow] {result.notice}")
    citations = result.citations
    if citations:
        table = Table(show_lines=True, title="citations")
        for column in ("n", "document", "quote"):
            table.add_column(column)
        for c in citations:
            table.add_row(str(c.passage), c.doc_id + (f" p.{c.page}" if c.page else ""), c.quote)
        out.print(table)
    who = f"{result.provider}/{result.model}" if result.provider else result.served_from
    cost = "unknown" if result.cost_usd is None else f"${result.cost_usd:.6f}"
    out.print(f"status {result.status} | route {result.route} | tier {result.tier} | {who} | prompt {result.prompt} | "
              f"tokens {result.tokens.prompt}+{result.tokens.completion} | cost {cost}")
    out.print("timings " + ", ".join(f"{k} {v:.0f}" for k, v in result.timings_ms.items()))
    failed = [a for a in result.attempts if a.outcome != "ok"]
    for a in failed:
        out.print(f"[dim]attempt {a.provider}/{a.model} {a.prompt}: {a.outcome} {a.detail}[/dim]")
    out.print(f"[dim]request id {result.request_id}[/dim]")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (open auth mode: loopback only)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port (0: any free port)."),
):
    """Serve the HTTP API (uvicorn, one worker: the embedded index is single-process)."""
    from api.serve import run_server

    code = run_server(_settings(), host, port, echo=lambda line: console.print(line, markup=False))
    if code:
        raise typer.Exit(code)

def main() -> None:
    """The console script: the typer app, with a held index explained instead of a traceback."""
    from retrieval.store import StoreLockedError

    try:
        app()
    except StoreLockedError:
        from api.server_lock import find_running_server, store_held_message

        settings = _settings()
        command = next((a for a in sys.argv[1:] if not a.startswith("-")), "this command")
        console.print(store_held_message(settings, find_running_server(settings), command), markup=False)
        sys.exit(3)


if __name__ == "__main__":
    main()

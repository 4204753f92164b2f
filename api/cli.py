"""The ``attest`` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from attest_settings import PROVIDER_NAMES, Risk

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
    manifest = Manifest(settings.manifest_url)
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
    settings = _settings()
    filters = {k_: v for k_, v in {"source": source, "tags": tag, "doc_id": doc_id}.items() if v}
    from api.cli_remote import search_through_server

    hits = search_through_server(settings, console, query, collection, k, mode, filters)
    if hits is None:
        from retrieval.search import Retriever

        store = _open_store(settings)
        try:
            result = Retriever(settings, store).search(query, collection, k, mode, filters)
        except ValueError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2)
        finally:
            store.close()
        hits, timings = [h.to_dict() for h in result.hits], result.timings_ms
    else:
        hits, timings = hits
    if as_json:
        print(json.dumps({"hits": hits, "timings_ms": timings}, indent=2))
        return
    table = Table(show_lines=True)
    for column in ("#", "score", "document", "text"):
        table.add_column(column)
    for rank, hit in enumerate(hits, start=1):
        where = hit["doc_id"] + (f" p.{hit['page']}" if hit.get("page") else "")
        text = hit["text"] if len(hit["text"]) <= 300 else hit["text"][:300] + "…"
        table.add_row(str(rank), f"{hit['score']:.3f}", where, text)
    Console().print(table)
    if not hits:
        console.print("no results")


from api.cli_eval import eval_app  # noqa: E402  (registered after the commands above)

app.add_typer(eval_app, name="eval")
from api.cli_verify import verify_command  # noqa: E402
app.command("verify")(verify_command)
from api.cli_review import review_app; app.add_typer(review_app, name="review")  # noqa: E402,E702

RISK_HELP = "low: served once its claims are checked, streamed as written | high: stricter threshold and judge"


@app.command()
def ask(
    question: str = typer.Argument(..., help="The question to answer from the indexed documents."),
    risk: Risk = typer.Option("low", "--risk", help=RISK_HELP),
    provider: list[str] = typer.Option([], "--provider", "-p",
                                       help=f"Provider(s) to try, in order: {' | '.join(PROVIDER_NAMES)} "
                                            "(repeatable; default: ATTEST_ANSWER_PROVIDERS)."),
    k: Optional[int] = typer.Option(None, "-k", "--top-k", min=1, max=20,
                                    help="Passages retrieved and given to the model (default: ATTEST_ANSWER_PASSAGES)."),
    collection: Optional[str] = typer.Option(None, "--collection", "-c"),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the semantic cache."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON (the /v1/query response) on stdout."),
):
    """Answer a question with citations, every claim checked against your documents before it is shown.

    The same path as POST /v1/query: retrieve (hybrid), answer, verify each claim, then serve, repair or
    withhold the answer. Only served or repaired answers enter the semantic cache.
    """
    if not question.strip():
        console.print("[red]the question is empty[/red]")
        raise typer.Exit(2)
    unknown = [p for p in provider if p not in PROVIDER_NAMES]
    if unknown:
        console.print(f"[red]unknown provider {unknown[0]!r}:[/red] valid providers are {', '.join(PROVIDER_NAMES)}")
        raise typer.Exit(2)
    settings = _settings()
    from api.cli_remote import ask_through_server

    if ask_through_server(settings, console, _print_answer, question, risk, provider, k, collection, no_cache,
                          as_json):
        return
    from api.question import QuestionPath
    from api.records import Records

    store = _open_store(settings)
    records = Records(settings.state_url)
    path = None
    try:
        path = QuestionPath.build(settings, store, records=records)
        response = path.ask(question, collection=collection, top_k=k, risk=risk, providers=provider or None,
                            use_cache=not no_cache)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2)
    finally:
        if path is not None:
            path.close()
        records.close()
        store.close()
    if as_json:
        print(response.model_dump_json(indent=2))
    else:
        _print_answer(response)
    if response.status in ("unavailable", "over_budget"):
        raise typer.Exit(1)


def _print_answer(response) -> None:
    """The answer first, then what was checked: decision, each claim's verdict, what was retracted, sources."""
    out = Console(soft_wrap=True)
    if response.short_answer:  # verified as the answer to the question: first, then the sentences behind it
        out.print(f"[bold]{escape(response.short_answer)}[/bold]")
    out.print(response.answer, markup=False)
    if response.notice and response.notice != response.answer:
        out.print(f"[yellow]note:[/yellow] {escape(response.notice)}")
    confidence = "" if response.confidence is None else f", confidence {response.confidence:.2f}"
    verified = "" if response.verified else " (claims not verified)"
    out.print(f"[bold]decision {response.decision}[/bold]{verified} at risk {response.risk}{confidence}")
    if response.claims:
        table = Table(show_lines=False, title="claims")
        for column in ("verdict", "score", "claim", "vetoes"):
            table.add_column(column)
        for claim in response.claims:
            score = "-" if claim.score is None else f"{claim.score:.2f}"
            table.add_row(claim.verdict, score, claim.text, ", ".join(claim.vetoes))
        out.print(table)
    for sentence in response.retracted:
        out.print(f"[red]retracted:[/red] {escape(sentence)}")
    if response.citations:
        table = Table(show_lines=True, title="citations")
        for column in ("n", "document", "quote"):
            table.add_column(column)
        for c in response.citations:
            table.add_row(str(c.passage), c.doc_id + (f" p.{c.page}" if c.page else ""), c.quote)
        out.print(table)
    who = f"{response.provider}/{response.model}" if response.provider else response.served_from
    cost = "unknown" if response.cost_usd is None else f"${response.cost_usd:.6f}"
    out.print(f"status {response.status} | route {response.route} | tier {response.tier} | {who} | "
              f"prompt {response.prompt} | tokens {response.tokens.prompt}+{response.tokens.completion} | cost {cost}")
    out.print("timings " + ", ".join(f"{k} {v:.0f}" for k, v in response.timings_ms.items()))
    for a in response.attempts:
        if a.outcome != "ok":
            out.print(f"[dim]attempt {a.provider}/{a.model} {a.prompt}: {a.outcome} {escape(a.detail)}[/dim]")
    out.print(f"[dim]request id {response.request_id}[/dim]")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (open auth mode: loopback only)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port (0: any free port)."),
    workers: int = typer.Option(1, "--workers", min=1, max=64,
                                help="Processes (>1 needs ATTEST_QDRANT_URL and a PostgreSQL ATTEST_DATABASE_URL)."),
):
    """Serve the HTTP API (uvicorn; one worker unless the index and the state are servers)."""
    from api.serve import run_server

    code = run_server(_settings(), host, port, echo=lambda line: console.print(line, markup=False), workers=workers)
    if code:
        raise typer.Exit(code)

import api.cli_ops as _ops; _ops.register(app)  # noqa: E402, E702  (attest backup, attest restore)


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

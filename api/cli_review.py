"""``attest review ...``: the human-review queue on the command line.

``list``, ``show``, ``approve`` and ``reject`` are clients of a running server's review API (the same checks,
tenant scope and audit trail as the web page and any other client): the server is ``--url``, else the
``attest serve`` recorded for this data directory; the key is ``--key``, else ``ATTEST_API_CLIENT_KEY`` (a key
with the role reviewer; none is needed in open mode). ``approve`` and ``reject`` claim the item first.

``export`` reads the decisions straight from ``<data_dir>/attest.sqlite`` (no server needed) and writes
golden cases for ``attest eval golden`` and labelled claim/evidence pairs for the verifier's training
(review/export.py).

Imports stay inside the commands: ``attest --help`` must not pay for them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

review_app = typer.Typer(no_args_is_help=True, help="The human-review queue: list, show, approve, reject, export.")
console = Console(stderr=True, soft_wrap=True)

URL_HELP = "The attest server (default: the `attest serve` running on this data directory)."
KEY_HELP = "A reviewer API key (default: ATTEST_API_CLIENT_KEY)."


def _client(url: Optional[str], key: Optional[str]):
    import httpx

    from api.cli import _settings
    from api.server_lock import find_running_server

    settings = _settings()
    if url is None:
        server = find_running_server(settings)
        if server is None:
            console.print("[red]no running `attest serve` found for this data directory: give --url[/red]")
            raise typer.Exit(2)
        url = server.url
    if key is None and settings.api_client_key is not None:
        key = settings.api_client_key.get_secret_value()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=300.0)


def _checked(response):
    """The JSON body of a 2xx response; otherwise the problem's title and reason, and exit 1."""
    if response.status_code < 300:
        return response.json()
    try:
        body = response.json()
        console.print(f"[red]{response.status_code} {body.get('title')}:[/red] {body.get('detail')}", markup=True)
    except ValueError:
        console.print(f"[red]{response.status_code}:[/red] {response.text[:300]}")
    raise typer.Exit(1)


def _call(url, key, method: str, path: str, **kwargs):
    import httpx

    try:
        with _client(url, key) as client:
            return _checked(client.request(method, path, **kwargs))
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach the server: {exc}[/red]")
        raise typer.Exit(1)


@review_app.command("list")
def review_list(
    status: str = typer.Option("open", "--status", help="pending | claimed | disputed | approved | edited | "
                                                         "rejected | open | decided | all"),
    tenant: Optional[str] = typer.Option(None, "--tenant"),
    collection: Optional[str] = typer.Option(None, "--collection", "-c"),
    risk: Optional[str] = typer.Option(None, "--risk"),
    kind: Optional[str] = typer.Option(None, "--kind", help="failed_check | feedback | flagged"),
    limit: int = typer.Option(50, "--limit", min=1, max=500),
    url: Optional[str] = typer.Option(None, "--url", help=URL_HELP),
    key: Optional[str] = typer.Option(None, "--key", help=KEY_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the API's JSON on stdout."),
):
    """Review items, oldest first."""
    from rich.table import Table

    params = {k: v for k, v in {"status": status, "tenant": tenant, "collection": collection, "risk": risk,
                                "kind": kind, "limit": limit}.items() if v is not None}
    body = _call(url, key, "GET", "/v1/review/items", params=params)
    if as_json:
        print(json.dumps(body, indent=2))
        return
    table = Table(title=f"review items ({status})")
    for column in ("id", "created", "status", "kind", "tenant", "collection", "risk", "failing", "question"):
        table.add_column(column)
    for item in body["items"]:
        table.add_row(item["id"], item["created_at"][:19], item["status"], item["kind"], item["tenant"],
                      item["collection"], item["risk"], str(item["failing_claims"]), item["question"])
    Console(width=200).print(table)
    if not body["items"]:
        console.print("no items")


@review_app.command("show")
def review_show(
    item_id: str = typer.Argument(..., help="The item id (rev_...)."),
    url: Optional[str] = typer.Option(None, "--url", help=URL_HELP),
    key: Optional[str] = typer.Option(None, "--key", help=KEY_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the API's JSON on stdout."),
):
    """One item: the question, the draft, each claim's verdict and evidence, the sources."""
    from rich.markup import escape
    from rich.table import Table

    item = _call(url, key, "GET", f"/v1/review/items/{item_id}")
    if as_json:
        print(json.dumps(item, indent=2))
        return
    out = Console(soft_wrap=True)
    out.print(f"[bold]{escape(item['id'])}[/bold] {item['kind']} {item['status']} | tenant {escape(item['tenant'])} | "
              f"collection {escape(item['collection'])} | risk {item['risk']} | model {item['model']} | "
              f"prompt {item['prompt_version']} | request {item['request_id']}")
    out.print(f"[bold]question:[/bold] {escape(item['question'])}")
    out.print(f"[bold]draft:[/bold] {escape(item['draft']['answer'])}")
    table = Table(title="claims")
    for column in ("verdict", "score", "threshold", "claim", "vetoes", "evidence"):
        table.add_column(column)
    for claim in item["claims"]:
        evidence = " | ".join(f"[{s['passage']}] {s['text']}" for s in claim.get("evidence_spans", []))
        table.add_row(claim["verdict"], "-" if claim["score"] is None else f"{claim['score']:.2f}",
                      "-" if claim["threshold"] is None else f"{claim['threshold']:.2f}", escape(claim["text"]),
                      ", ".join(claim["vetoes"]), escape(evidence))
    out.print(table)
    for n, source in enumerate(item["sources"], start=1):
        out.print(f"[dim][{n}] {escape(source['doc_id'])}:[/dim] {escape(source['text'][:300])}")
    for note in item["feedback"]:
        out.print(f"[yellow]feedback {note['rating']}:[/yellow] {escape(note.get('comment') or '')}")
    for decision in item["decisions"]:
        out.print(f"decision {decision['action']} by {decision['reviewer']} at {decision['created_at']}"
                  + (f": {escape(decision['reason'])}" if decision.get("reason") else ""))


@review_app.command("approve")
def review_approve(
    item_id: str = typer.Argument(..., help="The item id (rev_...)."),
    url: Optional[str] = typer.Option(None, "--url", help=URL_HELP),
    key: Optional[str] = typer.Option(None, "--key", help=KEY_HELP),
):
    """Claim the item and approve its draft."""
    _call(url, key, "POST", f"/v1/review/items/{item_id}/claim")
    item = _call(url, key, "POST", f"/v1/review/items/{item_id}/approve")
    console.print(f"{item['id']}: {item['status']}")


@review_app.command("reject")
def review_reject(
    item_id: str = typer.Argument(..., help="The item id (rev_...)."),
    reason: str = typer.Option(..., "--reason", help="Why the answer is wrong."),
    unanswerable: bool = typer.Option(False, "--unanswerable", help="The documents do not answer the question."),
    url: Optional[str] = typer.Option(None, "--url", help=URL_HELP),
    key: Optional[str] = typer.Option(None, "--key", help=KEY_HELP),
):
    """Claim the item and reject its answer, with a reason."""
    if not reason.strip():
        console.print("[red]--reason must not be blank[/red]")
        raise typer.Exit(2)
    _call(url, key, "POST", f"/v1/review/items/{item_id}/claim")
    item = _call(url, key, "POST", f"/v1/review/items/{item_id}/reject",
                 json={"reason": reason, "unanswerable": unanswerable})
    console.print(f"{item['id']}: {item['status']}")


@review_app.command("export")
def review_export(
    out: Path = typer.Option(..., "--out", help="Golden cases (JSONL) for `attest eval golden --golden FILE`."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="Labelled claim/evidence pairs (JSONL; default: "
                                                                "FILE's name with -claims)."),
    tenant: Optional[str] = typer.Option(None, "--tenant", help="Only this tenant's decisions."),
    since: Optional[str] = typer.Option(None, "--since", help="Only decisions at or after this ISO 8601 time."),
):
    """Write the reviewers' decisions as golden cases and as labelled claim/evidence pairs."""
    from api.cli import _settings
    from review.export import claim_pairs, golden_cases, pairs_path_for, write_jsonl
    from review.store import ReviewStore

    settings = _settings()
    store = ReviewStore(settings.state_url)
    try:
        items = store.decided(tenant=tenant, since=since)
    finally:
        store.close()
    cases, rows = golden_cases(items), claim_pairs(items)
    pairs = pairs or pairs_path_for(out)
    write_jsonl(cases, out)
    write_jsonl(rows, pairs)
    console.print(f"{len(items)} decided item(s): {len(cases)} golden case(s) -> {out}; "
                  f"{len(rows)} labelled claim(s) -> {pairs}")

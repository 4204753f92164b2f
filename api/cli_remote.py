"""``attest search`` and ``attest ask`` through a running ``attest serve``.

When ``attest serve`` holds the data directory (its ``server.json``, api/server_lock.py) the embedded index
cannot be opened here, and the server already has the model loaded: the command is sent to its HTTP API
(``POST /v1/search``, ``POST /v1/query``) and a line on stderr says so. The same encoder, index and question
path answer as in-process, so the hits and answers are the same; only the start-up (loading torch and the
model, ~1.5-3 s) is skipped. Standard-library HTTP (urllib) keeps this path's imports to milliseconds.

    found = search_through_server(settings, console, query, None, 10, "hybrid", {})  # None: search here
    if ask_through_server(settings, console, print_answer, question, "low", [], None, None, False, False): ...
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from types import SimpleNamespace

import typer
from rich.markup import escape


class RemoteError(Exception):
    """The server answered with an error (``status``: its HTTP status; ``detail``: its problem text)."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


class NoServer(Exception):
    """The server recorded for this data directory did not answer: run the command in-process."""


def server_for(settings, command: str, echo):
    """The running ``attest serve`` to send ``command`` through, or None (no server recorded for this data
    directory, or none alive). With a server that wants keys, answers ``/healthz`` and no ``ATTEST_API_CLIENT_KEY``
    is set: says what to do and raises SystemExit(3) (the index is held, the command cannot run here either)."""
    from api.server_lock import find_running_server, lock_path, store_held_message

    if not lock_path(settings).is_file():
        return None
    server = find_running_server(settings, probe=False)  # the request itself probes; a refusal falls back
    if server is None:
        return None
    if server.auth_mode != "open" and _key(settings) is None:
        if find_running_server(settings, probe=True) is None:
            return None  # the recorded pid is not a server that answers: nothing holds the index, run here
        echo(store_held_message(settings, server, command) + f" Set ATTEST_API_CLIENT_KEY to let `attest {command}` "
             "send it through the server.")
        raise SystemExit(3)
    return server


def _key(settings) -> str | None:
    key = getattr(settings, "api_client_key", None)
    return key.get_secret_value() if key else None


def post(server, settings, path: str, body: dict, timeout_s: float) -> dict:
    headers = {"content-type": "application/json", "accept": "application/json"}
    if (key := _key(settings)) and server.auth_mode != "open":
        headers["authorization"] = f"Bearer {key}"
    request = urllib.request.Request(server.url + path, data=json.dumps(body).encode(), headers=headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise RemoteError(exc.code, _problem_text(exc)) from None
    except (urllib.error.URLError, ConnectionError) as exc:
        raise NoServer(f"{server.url}: {getattr(exc, 'reason', exc)}") from None


def _problem_text(exc: urllib.error.HTTPError) -> str:
    raw = exc.read()
    try:
        body = json.loads(raw)
        return f"{body.get('title') or exc.code}: {body.get('detail')}"
    except ValueError:
        return f"{exc.code}: {raw[:300].decode(errors='replace')}"


def search_via(server, settings, body: dict) -> tuple[list[dict], dict]:
    """``POST /v1/search``: (hits as dicts, timings)."""
    out = post(server, settings, "/v1/search", body, timeout_s=120.0)
    return out["hits"], out.get("timings_ms", {})


def ask_via(server, settings, body: dict) -> tuple[dict, SimpleNamespace]:
    """``POST /v1/query``: (the response JSON, the same as attributes for the CLI's printer)."""
    out = post(server, settings, "/v1/query", body, timeout_s=3600.0)
    return out, _namespace(out)


_PLAIN_DICTS = {"timings_ms", "signals", "channels", "filters"}  # read as mappings by the printer


def _namespace(value):
    if isinstance(value, dict):
        return SimpleNamespace(**{k: v if k in _PLAIN_DICTS else _namespace(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_namespace(v) for v in value]
    return value


# ---- the CLI commands' side (api/cli.py calls these; ``console`` is its stderr console) -----------------------
def _server_or_none(settings, console, command: str):
    return server_for(settings, command, echo=lambda line: console.print(line, markup=False))


def _said_via(console, server) -> None:
    console.print(f"via attest serve at {server.url} (pid {server.pid})", markup=False, highlight=False)


def _failed(console, server, exc: RemoteError):
    """A server error, said plainly: 4xx is the request's fault (exit 2), anything else exit 1."""
    console.print(f"[red]attest serve at {server.url} answered {exc.status}:[/red] {escape(exc.detail)}")
    raise typer.Exit(2 if 400 <= exc.status < 500 and exc.status not in (401, 403, 429) else 1)


def search_through_server(settings, console, query, collection, k, mode, filters):
    """``attest search``: (hits as dicts, timings) from the running ``attest serve``, or None to search here."""
    server = _server_or_none(settings, console, "search")
    if server is None:
        return None
    body = {"query": query, "top_k": k, "mode": mode, "collection": collection, "filters": filters or None}
    try:
        found = search_via(server, settings, {k_: v for k_, v in body.items() if v is not None})
    except RemoteError as exc:
        _failed(console, server, exc)
    except NoServer as exc:
        console.print(f"attest serve did not answer ({exc}); searching in this process", markup=False)
        return None
    _said_via(console, server)
    return found


def ask_through_server(settings, console, print_answer, question, risk, provider, k, collection, no_cache,
                       as_json) -> bool:
    """``attest ask`` through the running ``attest serve``, printed as in-process; False: answer here."""
    server = _server_or_none(settings, console, "ask")
    if server is None:
        return False
    if len(provider) > 1:
        console.print("[red]attest serve takes one --provider per question[/red] (its fallback chain is "
                      "ATTEST_ANSWER_PROVIDERS); give one, or none")
        raise typer.Exit(2)
    body = {"question": question, "risk": risk, "cache": not no_cache, "top_k": k, "collection": collection,
            "provider": provider[0] if provider else None}
    try:
        raw, response = ask_via(server, settings, {k_: v for k_, v in body.items() if v is not None})
    except RemoteError as exc:
        _failed(console, server, exc)
    except NoServer as exc:
        console.print(f"attest serve did not answer ({exc}); answering in this process", markup=False)
        return False
    _said_via(console, server)
    if as_json:
        print(json.dumps(raw, indent=2))
    else:
        print_answer(response)
    if response.status in ("unavailable", "over_budget"):
        raise typer.Exit(1)
    return True

"""Which process holds a data directory: ``attest serve`` writes ``<data_dir>/server.json`` naming its address,
and removes it on shutdown. The CLI reads it when the embedded store is locked, to say plainly what holds
the store and what to do, or to send the work through the server's HTTP API.

    server = find_running_server(settings)          # RunningServer or None (stale files are ignored)
    if server: print(store_held_message(settings, server, "ingest"))
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

LOCK_NAME = "server.json"


@dataclass
class RunningServer:
    pid: int
    host: str
    port: int
    url: str
    auth_mode: str
    started_at: str
    data_dir: str


def lock_path(settings) -> Path:
    return Path(settings.data_dir) / LOCK_NAME


def _client_host(host: str) -> str:
    """Where a local client should connect: a wildcard bind is reached on loopback."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def write_lock(settings, host: str, port: int) -> RunningServer:
    path = lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = RunningServer(pid=os.getpid(), host=host, port=port, url=f"http://{_client_host(host)}:{port}",
                         auth_mode=settings.api_auth_mode,
                         started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         data_dir=str(Path(settings.data_dir).resolve()))
    partial = path.with_suffix(f".tmp-{os.getpid()}")
    partial.write_text(json.dumps(asdict(info), indent=2) + "\n")
    os.replace(partial, path)
    return info


def remove_lock(settings) -> None:
    """Remove the lock file if this process wrote it."""
    path = lock_path(settings)
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_running_server(settings, probe: bool = True, timeout_s: float = 2.0) -> RunningServer | None:
    """The ``attest serve`` holding ``settings.data_dir``, if its lock file names a live process (and, with
    ``probe``, that process answers ``GET /healthz``). A stale file (dead process) is ignored."""
    try:
        info = RunningServer(**json.loads(lock_path(settings).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if not pid_alive(info.pid):
        return None
    if probe:
        import httpx

        try:
            if httpx.get(f"{info.url}/healthz", timeout=timeout_s).status_code != 200:
                return None
        except httpx.HTTPError:
            return None
    return info


def store_held_message(settings, server: RunningServer | None = None, command: str = "this command") -> str:
    """What to tell a CLI user whose command found the embedded store locked."""
    index = Path(settings.data_dir) / "qdrant"
    if server is None:
        return (f"the index at {index} is open in another process, and no running `attest serve` is recorded "
                f"for this data directory; wait for the other `attest` command to finish, or use another "
                f"ATTEST_DATA_DIR")
    hint = {
        "ingest": f"upload the files through it: curl -F files=@FILE {server.url}/v1/documents",
        "ask": f"ask through it: curl -H 'content-type: application/json' -d '{{\"question\": \"...\"}}' "
               f"{server.url}/v1/query",
        "search": f"search through it: curl -H 'content-type: application/json' -d '{{\"query\": \"...\"}}' "
                  f"{server.url}/v1/search",
    }.get(command, f"send the work through its HTTP API at {server.url}")
    key = " (with your API key: -H 'Authorization: Bearer KEY')" if server.auth_mode != "open" else ""
    return (f"the index at {index} is held by `attest serve` (pid {server.pid}, {server.url}, since "
            f"{server.started_at}). Stop that server to run `attest {command}` directly, or {hint}{key}.")


def forward_ingest(server: RunningServer, paths: list[Path], collection: str | None = None,
                   api_key: str | None = None, timeout_s: float = 3600.0, poll_s: float = 1.0) -> dict:
    """Send files (folders are walked; relative paths kept as document ids) to a running server's
    ``POST /v1/documents`` and wait for the job; returns the finished job (``GET /v1/jobs/{id}``)."""
    import httpx

    from ingest.reader import discover

    found = discover([Path(p) for p in paths])
    files = [(path.relative_to(root).as_posix(), path) for root, path in found.files]
    if not files:
        raise ValueError("no supported files found under the given paths")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(base_url=server.url, headers=headers, timeout=120.0) as client:
        handles = [(name, open(path, "rb")) for name, path in files]
        try:
            response = client.post("/v1/documents", data={"collection": collection} if collection else {},
                                   files=[("files", (name, fh)) for name, fh in handles])
        finally:
            for _, fh in handles:
                fh.close()
        if response.status_code != 202:
            raise RuntimeError(_problem_text(response))
        status_url = response.json()["status_url"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = client.get(status_url)
            if job.status_code != 200:
                raise RuntimeError(_problem_text(job))
            body = job.json()
            if body["status"] in ("succeeded", "partial", "failed"):
                return body
            time.sleep(poll_s)
    raise TimeoutError(f"the ingest job at {server.url}{status_url} did not finish within {timeout_s:.0f} s")


def handle_locked_store(settings, command: str, paths: list[Path] | None = None, collection: str | None = None,
                        echo=print) -> int:
    """What the CLI does when the embedded store is locked; returns the exit code.

    ``attest ingest`` while ``attest serve`` holds the data directory: the files are sent through the
    server's ``POST /v1/documents`` (with ``ATTEST_API_CLIENT_KEY`` when the server wants keys) and the job's
    per-file results are printed. Any other command, or no live server: a plain message naming what holds
    the store and what to do (exit 3).
    """
    server = find_running_server(settings)
    if server is None or command != "ingest" or not paths:
        echo(store_held_message(settings, server, command))
        return 3
    key = settings.api_client_key.get_secret_value() if getattr(settings, "api_client_key", None) else None
    if server.auth_mode != "open" and not key:
        echo(store_held_message(settings, server, command) + " Set ATTEST_API_CLIENT_KEY to let `attest ingest` "
             "send the files through it.")
        return 3
    echo(f"the index is held by `attest serve` (pid {server.pid}); sending the files through {server.url} ...")
    try:
        job = forward_ingest(server, paths, collection, key)
    except (RuntimeError, ValueError, TimeoutError, OSError) as exc:
        echo(f"could not ingest through the server: {exc}")
        return 1
    for f in job["files"]:
        echo(f"{f['status']:>9}  {f['name']}" + (f": {f['reason']}" if f.get("reason") else "")
             + (f" ({f['chunks']} chunks)" if f.get("chunks") else ""))
    echo(f"job {job['id']}: {job['status']}")
    return 0 if job["status"] in ("succeeded", "partial") else 1


def _problem_text(response) -> str:
    try:
        body = response.json()
        return f"{response.status_code} {body.get('title')}: {body.get('detail')} (request id {body.get('request_id')})"
    except ValueError:
        return f"{response.status_code}: {response.text[:300]}"

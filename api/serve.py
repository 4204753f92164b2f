"""``attest serve``: the API under uvicorn, one worker (the embedded shard is single-process), with a lock
file in the data directory naming the server's address while it runs (``api.server_lock``)."""

from __future__ import annotations

import atexit
import ipaddress
import sys


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def auth_banner(settings, keys: int) -> str:
    if settings.api_auth_mode == "open":
        return ("auth: OPEN - no API key needed, every collection readable and writable "
                "(ATTEST_API_AUTH_MODE=open; for local use only)")
    if keys == 0:
        return ("auth: API keys - but none is configured, so every request will get 401: set ATTEST_API_KEYS "
                "(JSON: {\"<key>\": {\"tenant\": ..., \"collections\": [...]}}) or add keys to the api_keys table, "
                "or ATTEST_API_AUTH_MODE=open for local use")
    return f"auth: API keys ({keys} configured); each key reads and writes only its own collections"


def run_server(settings, host: str = "127.0.0.1", port: int = 8000, echo=print, workers: int = 1) -> int:
    import uvicorn

    from api.app import create_app
    from api.server_lock import find_running_server, remove_lock, write_lock
    from retrieval.store import StoreLockedError

    if settings.api_auth_mode == "open" and not is_loopback(host):
        echo(f"refusing to serve {host}:{port} in open mode: open mode (no API keys) is for local use only; "
             f"bind 127.0.0.1 or configure API keys (ATTEST_API_AUTH_MODE=keys, ATTEST_API_KEYS)")
        return 2
    running = find_running_server(settings)
    if running is not None:
        echo(f"`attest serve` is already running for {settings.data_dir} (pid {running.pid}, {running.url})")
        return 3
    if workers > 1:
        from api.serve_workers import run_workers

        return run_workers(settings, host, port, workers, echo)
    try:
        app = create_app(settings)
    except StoreLockedError as exc:
        echo(f"cannot serve: {exc}")
        return 3
    services = app.state.services
    try:  # open every embedded shard now: a store held by another process stops the start, plainly
        for name in services.store.list_collections():
            services.store.count(name)
    except StoreLockedError as exc:
        services.close()
        echo(f"cannot serve: {exc}; wait for that `attest` command to finish, then start the server again")
        return 3
    backend = "Qdrant server " + settings.qdrant_url if settings.qdrant_url else f"embedded ({settings.edge_dir})"
    echo(f"attest serve: http://{host}:{port}  data {settings.data_dir}  store {backend}  one worker")
    echo(auth_banner(settings, services.keys.count()))

    config = uvicorn.Config(app, host=host, port=port, workers=1, log_config=None, access_log=False,
                            timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    original_startup = server.startup

    async def startup(sockets=None):
        await original_startup(sockets=sockets)
        if server.started:
            bound = port
            for srv in getattr(server, "servers", []):
                for sock in srv.sockets:
                    bound = sock.getsockname()[1]
                    break
            info = write_lock(settings, host, bound)
            echo(f"listening on {info.url} (lock file {settings.data_dir}/server.json)")

    server.startup = startup
    # uvicorn re-raises SIGTERM/SIGINT after its shutdown, which ends the process before a `finally` here
    # runs: the app's lifespan removes the lock file; atexit and finally cover the other ways out.
    app.state.shutdown_hooks.append(lambda: remove_lock(settings))
    atexit.register(remove_lock, settings)
    try:
        server.run()
    finally:
        remove_lock(settings)
    return 0 if server.started else 1


if __name__ == "__main__":  # python -m api.serve [port]
    from attest_settings import Settings

    sys.exit(run_server(Settings(), port=int(sys.argv[1]) if len(sys.argv) > 1 else 8000))

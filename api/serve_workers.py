"""``attest serve --workers N``: N uvicorn processes on one socket, for a Qdrant server (ATTEST_QDRANT_URL)
and a shared PostgreSQL state (ATTEST_DATABASE_URL). Each process builds the app from the environment
(``create``); ingest jobs are claimed by exactly one of them (``Records.claim_job``)."""

from __future__ import annotations


def create():
    """The app factory every worker process calls."""
    from api.app import create_app
    from attest_settings import Settings

    return create_app(Settings())


def why_not_several(settings) -> str | None:
    """Why this configuration cannot run several workers, or None."""
    if not settings.qdrant_url:
        return ("the embedded index can be opened by one process only: set ATTEST_QDRANT_URL (a Qdrant server) "
                "to run several workers")
    if not (settings.database_url or "").startswith(("postgresql://", "postgres://")):
        return ("several workers need one shared state database: set ATTEST_DATABASE_URL=postgresql://... "
                "(SQLite state is per process)")
    return None


def run_workers(settings, host: str, port: int, workers: int, echo=print) -> int:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from api.server_lock import remove_lock, write_lock

    reason = why_not_several(settings)
    if reason:
        echo(f"cannot serve with {workers} workers: {reason}")
        return 2
    config = uvicorn.Config("api.serve_workers:create", factory=True, host=host, port=port, workers=workers,
                            log_config=None, access_log=False, timeout_graceful_shutdown=10)
    sock = config.bind_socket()
    bound = sock.getsockname()[1]
    info = write_lock(settings, host, bound)
    echo(f"attest serve: {info.url}  store Qdrant server {settings.qdrant_url}  {workers} workers")
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        remove_lock(settings)
    return 0

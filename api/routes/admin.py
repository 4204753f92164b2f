"""Operations a local operator asks of a running server: a consistent backup while it keeps answering.

Not an API-key route: the caller proves it can read the data directory by sending the token in
``<data_dir>/admin.token`` (``X-Attest-Admin-Token``), which is what ``attest backup`` does. Left out of the
OpenAPI schema: it is the CLI's channel to its own server, not a client API.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from fastapi import APIRouter, Depends, Header
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.deps import get_services
from api.errors import Problem
from api.services import Services

router = APIRouter(prefix="/v1/admin", include_in_schema=False)

# How long a backup waits for the ingest job writing a collection to finish before it gives up.
QUIESCE_TIMEOUT_S = 600.0


class BackupRequest(BaseModel):
    target: str = Field(min_length=1, max_length=4096, description="An absolute folder on the server's machine.")
    keep: int = Field(default=1, ge=1, le=100)


def check_admin_token(services: Services, given: str | None) -> None:
    from api.backup import admin_token_path

    path = admin_token_path(services.settings)
    try:
        expected = path.read_text().strip()
    except OSError:
        expected = ""
    if not expected or not given or not hmac.compare_digest(expected.encode(), given.encode()):
        raise Problem(403, "admin-token-required", "Admin token required",
                      f"send the token in {path} as X-Attest-Admin-Token (`attest backup` on the server's "
                      f"machine does)")


@router.post("/backup")
async def backup(body: BackupRequest, services: Services = Depends(get_services),
                 x_attest_admin_token: str | None = Header(default=None)) -> dict:
    from api.backup import BackupError, write_backup

    check_admin_token(services, x_attest_admin_token)
    target = Path(body.target)
    if not target.is_absolute():
        raise Problem(422, "invalid-request", "Invalid request", f"target: {body.target!r} is not an absolute path")

    def run() -> dict:
        return write_backup(services.settings, services.store, target, keep=body.keep,
                            quiesce=lambda: services.locks.hold_all(timeout=QUIESCE_TIMEOUT_S))

    try:
        return await run_in_threadpool(run)
    except TimeoutError:
        raise Problem(503, "backup-busy", "Backup could not start",
                      f"an ingest job kept a collection busy for {QUIESCE_TIMEOUT_S:.0f} s; retry when it has "
                      f"finished", headers={"Retry-After": "60"}) from None
    except (BackupError, OSError) as exc:
        raise Problem(400, "backup-failed", "Backup failed", str(exc)) from None

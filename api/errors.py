"""Errors as RFC 9457 problem details (``application/problem+json``), for every 4xx and 5xx.

A problem says what went wrong and why, and carries the request id; a stack trace never reaches a client
(it goes to the log, under the same request id).

    raise Problem(404, "collection-not-found", "Collection not found", f"no collection {name!r} for this key")
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.logs import request_id_var

log = logging.getLogger("attest.api")

PROBLEM_TYPE = "urn:attest:problem:"
MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """An error the client should see: status, a stable slug (the problem type), a title and the reason."""

    def __init__(self, status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None,
                 **extra):
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def problem_body(status: int, slug: str, title: str, detail: str, instance: str, request_id: str | None,
                 **extra) -> dict:
    body = {"type": PROBLEM_TYPE + slug, "title": title, "status": status, "detail": detail,
            "instance": instance, "request_id": request_id}
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def problem_response(request: Request | None, status: int, slug: str, title: str, detail: str,
                     headers: dict[str, str] | None = None, path: str | None = None, **extra) -> JSONResponse:
    request_id = request_id_var.get()
    instance = path if path is not None else (request.url.path if request is not None else "")
    body = problem_body(status, slug, title, detail, instance, request_id, **extra)
    # The X-Request-ID header is added to every response by api.middleware.
    return JSONResponse(body, status_code=status, headers=dict(headers or {}), media_type=MEDIA_TYPE)


def _slug(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "-")
    except ValueError:
        return "error"


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _location(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body",)] or [str(p) for p in loc]
    return ".".join(parts)


def _message(error: dict) -> str:
    if error.get("type") == "string_pattern_mismatch" and (error.get("ctx") or {}).get("pattern") == r"\S":
        return "must not be empty or blank"
    return error.get("msg", "")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return problem_response(request, exc.status, exc.slug, exc.title, exc.detail, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            first = next(e for e in errors if e.get("type") == "json_invalid")
            reason = (first.get("ctx") or {}).get("error") or first.get("msg", "invalid JSON")
            return problem_response(request, 400, "malformed-body", "Malformed request body",
                                    f"the body is not valid JSON: {reason}")
        shown = [{"field": _location(e.get("loc", ())), "message": _message(e), "type": e.get("type", "")}
                 for e in errors[:20]]
        detail = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in shown[:5])
        return problem_response(request, 422, "invalid-request", "Invalid request", detail, errors=shown)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else _title(exc.status_code)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return problem_response(request, exc.status_code, _slug(exc.status_code), _title(exc.status_code), detail,
                                dict(exc.headers or {}))

    from retrieval.store import StoreLockedError

    @app.exception_handler(StoreLockedError)
    async def _locked(request: Request, exc: StoreLockedError):
        log.error("the vector store is locked by another process: %s", exc)
        return problem_response(request, 503, "store-locked", "Index unavailable",
                                "the document index is held by another process on this machine (an `attest` "
                                "command?); retry when it has finished", {"Retry-After": "30"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem_response(request, 500, "internal-error", "Internal server error",
                                f"the server failed to handle this request ({type(exc).__name__}); it has been "
                                f"logged: quote the request id when you report it")

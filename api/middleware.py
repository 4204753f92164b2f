"""The outermost layer: a request id on every response and log line, one access-log line per request,
request metrics, and the body size limit (before any route reads a byte of an oversized body).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import MEDIA_TYPE, problem_body
from api.logs import request_id_var, tenant_var

access = logging.getLogger("attest.api.access")
log = logging.getLogger("attest.api")
_INCOMING_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"the request body is over the limit of {_size(limit)}")
        self.limit = limit


def _size(n: int) -> str:
    return f"{n / 1e6:g} MB" if n >= 1_000_000 else f"{n / 1000:g} kB"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, settings, metrics):
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.json_limit = settings.api_max_body_kb * 1000
        self.upload_limit = int(settings.api_max_upload_total_mb * 1e6)

    def _limit(self, scope: Scope) -> int:
        if scope["path"].rstrip("/") == "/v1/documents" and scope["method"] == "POST":
            return self.upload_limit
        return self.json_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        incoming = headers.get("x-request-id", "")
        request_id = incoming if _INCOMING_ID.match(incoming) else "req_" + uuid.uuid4().hex[:20]
        token = request_id_var.set(request_id)
        tenant_token = tenant_var.set(None)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = {"code": 500, "started": False}
        limit = self._limit(scope)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        async def send_problem(code: int, slug: str, title: str, detail: str) -> None:
            body = json.dumps(problem_body(code, slug, title, detail, scope["path"], request_id)).encode()
            await send_wrapper({"type": "http.response.start", "status": code, "headers": [
                (b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]})
            await send_wrapper({"type": "http.response.body", "body": body})

        try:
            declared = headers.get("content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > limit):
                if declared.isdigit():
                    await send_problem(413, "body-too-large", "Request body too large",
                                       f"the request body is {_size(int(declared))}, over the limit of {_size(limit)} "
                                       f"(ATTEST_API_MAX_{'UPLOAD_TOTAL_MB' if limit == self.upload_limit else 'BODY_KB'})")
                else:
                    await send_problem(400, "malformed-request", "Malformed request",
                                       "the Content-Length header is not a number")
                return
            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise BodyTooLarge(limit)
                return message

            await self.app(scope, limited_receive, send_wrapper)
        except BodyTooLarge as exc:
            if not status["started"]:
                await send_problem(413, "body-too-large", "Request body too large", exc.detail)
        except Exception as exc:  # a bug: logged with its trace under the request id, never shown to the client
            log.error("unhandled error on %s %s", scope["method"], scope["path"], exc_info=exc)
            if not status["started"]:
                await send_problem(500, "internal-error", "Internal server error",
                                   f"the server failed to handle this request ({type(exc).__name__}); it has been "
                                   f"logged: quote the request id when you report it")
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], template, str(status["code"])).inc()
            self.metrics.request_seconds.labels(scope["method"], template).observe(elapsed)
            access.info("%s %s %s", scope["method"], scope["path"], status["code"],
                        extra={"method": scope["method"], "path": scope["path"], "route": template,
                               "status": status["code"], "duration_ms": round(elapsed * 1000, 1),
                               "client": (scope.get("client") or ("", 0))[0]})
            tenant_var.reset(tenant_token)
            request_id_var.reset(token)

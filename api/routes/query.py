"""Questions: ``POST /v1/query`` (the whole answer at once) and ``POST /v1/query/stream`` (server-sent events)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import threading

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.auth import Principal
from api.deps import authenticate, get_services, readable_collection
from api.errors import Problem
from api.question import GenerationCancelled
from api.routes import problems
from api.schemas import QueryRequest, QueryResponse
from api.services import Services

log = logging.getLogger("attest.api.query")
router = APIRouter(prefix="/v1", tags=["questions"])

_SSE_DOC = """Server-sent events, in order. Low risk: `retrieval`, `token`..., `verified` (the first sentence, once
its claims hold, checked while the model writes the rest; absent when it did not hold), `claim`..., `final`.
When the fast model declines and a stronger one answers instead, `restart` (`reason`: "escalated") comes
between the two: drop the tokens shown so far; the stronger model's `token`s follow.
High risk: `retrieval`, then (after verification) `claim`..., `token`... (verified text only), `final`.
`final` carries the whole answer object (as `POST /v1/query` returns it) with `retracted`; `error` carries
`message` and `request_id`. Lines starting with ':' are keep-alive comments."""
# One server-sent event; ``data`` is JSON (``final``: a QueryResponse).
_SSE_EVENT = {"type": "object", "required": ["event", "data"], "properties": {
    "event": {"type": "string", "enum": ["retrieval", "token", "verified", "restart", "claim", "final", "error"]},
    "data": {"type": "string", "contentMediaType": "application/json"}}}


def _check(body: QueryRequest, settings) -> None:
    """The limits set by configuration (the schema rejects a blank question, an unknown risk and the rest)."""
    if len(body.question) > settings.api_max_question_chars:
        raise Problem(422, "question-too-long", "Question too long",
                      f"question: {len(body.question)} characters, over the limit of {settings.api_max_question_chars} "
                      f"(ATTEST_API_MAX_QUESTION_CHARS)")
    if body.top_k is not None and body.top_k > settings.api_max_top_k:
        raise Problem(422, "top-k-too-large", "top_k too large",
                      f"top_k: {body.top_k} is over the limit of {settings.api_max_top_k} (ATTEST_API_MAX_TOP_K)")


def _ask_kwargs(body: QueryRequest, principal: Principal, collection: str, request_id: str) -> dict:
    if body.review is not None and not principal.may_request_review():
        raise Problem(403, "review-not-allowed", "Review not allowed",
                      "this API key may not set 'review' (it needs the role 'request_review'); leave it out to use "
                      "the server's setting")
    return dict(collection=collection, filters=body.filters.as_dict() if body.filters else None, top_k=body.top_k,
                risk=body.risk, providers=[body.provider] if body.provider else None, principal=principal.usage(),
                request_id=request_id, use_cache=body.cache, review=body.review)


@router.post("/query", response_model=QueryResponse, summary="Answer a question, every claim checked",
             responses=problems(400, 401, 403, 404, 413, 422, 429, 503))
async def query(body: QueryRequest, request: Request, principal: Principal = Depends(authenticate),
                services: Services = Depends(get_services)) -> QueryResponse:
    settings = services.settings
    _check(body, settings)
    collection = readable_collection(principal, body.collection, settings)
    request_id = request.state.request_id
    kwargs = _ask_kwargs(body, principal, collection, request_id)
    ticket = await services.admission.enter(principal.key_id, limit_key=not principal.open_mode)
    try:
        response = await run_in_threadpool(services.question.ask, body.question, **kwargs)
    except ValueError as exc:
        raise Problem(422, "invalid-request", "Invalid request", str(exc)) from None
    finally:
        services.admission.leave(ticket)
    response.timings_ms["queue_ms"] = ticket.queued_ms
    await run_in_threadpool(services.records.record_query, response, principal.tenant, principal.key_id, collection)
    services.reviews.after_delivery(response, principal.tenant, principal.key_id, collection)  # never waits
    return response


@router.post("/query/stream", summary="Answer a question as server-sent events", description=_SSE_DOC,
             response_class=StreamingResponse,
             responses={200: {"description": "A stream of server-sent events", "content": {"text/event-stream": {
                 "itemSchema": _SSE_EVENT}}},
                        **problems(400, 401, 403, 404, 413, 422, 429, 503)})
async def query_stream(body: QueryRequest, request: Request, principal: Principal = Depends(authenticate),
                       services: Services = Depends(get_services)) -> StreamingResponse:
    settings = services.settings
    _check(body, settings)
    collection = readable_collection(principal, body.collection, settings)
    request_id = request.state.request_id
    kwargs = _ask_kwargs(body, principal, collection, request_id)
    ticket = await services.admission.enter(principal.key_id, limit_key=not principal.open_mode)

    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    cancel = threading.Event()

    def push(item) -> None:
        try:
            loop.call_soon_threadsafe(events.put_nowait, item)
        except RuntimeError:  # the loop is gone (shutdown): nobody is listening any more
            pass

    def work() -> None:
        try:
            response = services.question.ask(body.question, on_event=lambda name, data: push((name, data)),
                                             cancel=cancel, **kwargs)
            services.records.record_query(response, principal.tenant, principal.key_id, collection)
            services.reviews.after_delivery(response, principal.tenant, principal.key_id, collection)
        except GenerationCancelled:
            pass
        except ValueError as exc:
            push(("error", {"message": str(exc), "request_id": request_id}))
        except BaseException as exc:  # noqa: BLE001 - the client gets a clear message, the log the details
            log.error("streamed question failed", exc_info=exc)
            push(("error", {"message": f"Sorry, the answer failed ({type(exc).__name__}). Please try again; if it "
                                       f"keeps failing, quote request id {request_id}.", "request_id": request_id}))
        finally:
            push(None)

    context = contextvars.copy_context()
    future = loop.run_in_executor(None, context.run, work)
    future.add_done_callback(lambda _: services.admission.leave(ticket))
    keepalive = settings.api_stream_keepalive_s

    async def stream():
        try:
            while True:
                try:
                    item = await asyncio.wait_for(events.get(), timeout=keepalive)
                except (asyncio.TimeoutError, TimeoutError):
                    yield ": keep-alive\n\n"
                    continue
                if item is None:
                    return
                name, data = item
                yield f"event: {name}\ndata: {json.dumps(data, default=str)}\n\n"
        finally:
            # Reached when the stream ends and when the client goes away (Starlette cancels this generator):
            # the model stops at its next token.
            if not future.done():
                cancel.set()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

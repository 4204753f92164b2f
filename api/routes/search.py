"""``POST /v1/search``: the retrieval stage alone (no model): hits with per-channel ranks."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from api.auth import Principal
from api.deps import authenticate, get_services, readable_collection
from api.errors import Problem
from api.routes import problems
from api.schemas import SearchHit, SearchRequest, SearchResponse
from api.services import Services

router = APIRouter(prefix="/v1", tags=["search"])


@router.post("/search", response_model=SearchResponse, summary="Search the documents (no model)",
             responses=problems(400, 401, 404, 413, 422))
async def search(body: SearchRequest, request: Request, principal: Principal = Depends(authenticate),
                 services: Services = Depends(get_services)) -> SearchResponse:
    settings = services.settings
    if not body.query.strip():
        raise Problem(422, "invalid-request", "Invalid request", "query: the query is empty")
    if len(body.query) > settings.api_max_question_chars:
        raise Problem(422, "query-too-long", "Query too long",
                      f"query: {len(body.query)} characters, over the limit of {settings.api_max_question_chars} "
                      f"(ATTEST_API_MAX_QUESTION_CHARS)")
    collection = readable_collection(principal, body.collection, settings)
    retriever = services.question.retriever
    try:
        result = await run_in_threadpool(retriever.search, body.query, collection, body.top_k, body.mode,
                                         body.filters.as_dict() if body.filters else None)
    except ValueError as exc:
        raise Problem(422, "invalid-request", "Invalid request", str(exc)) from None
    return SearchResponse(request_id=request.state.request_id, collection=collection,
                          hits=[SearchHit(**h.to_dict()) for h in result.hits],
                          timings_ms={k: round(v, 1) for k, v in result.timings_ms.items()})

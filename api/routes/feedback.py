"""``POST /v1/feedback``: a rating (and a correction) on an answer, stored with what was answered. A thumbs
down also puts the answer in the human-review queue (kind ``feedback``; api/review.py), with the comment as
the reason; the response names the item and the URL to poll for the reviewed answer."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from api.auth import Principal
from api.deps import authenticate, get_services
from api.errors import Problem
from api.routes import problems
from api.schemas import FeedbackRequest, FeedbackStored
from api.services import Services

router = APIRouter(prefix="/v1", tags=["feedback"])


@router.post("/feedback", response_model=FeedbackStored, status_code=201, summary="Rate or correct an answer",
             responses=problems(400, 401, 404, 413, 422))
async def feedback(body: FeedbackRequest, principal: Principal = Depends(authenticate),
                   services: Services = Depends(get_services)) -> FeedbackStored:
    answered = await run_in_threadpool(services.records.query, body.request_id, principal.tenant)
    if answered is None:
        raise Problem(404, "request-not-found", "Request not found",
                      f"no answered question with request id {body.request_id!r} for this API key's tenant")
    feedback_id = await run_in_threadpool(services.records.add_feedback, body.request_id, principal.tenant,
                                          principal.key_id, body.rating, body.correction, body.comment, answered)
    services.metrics.feedback.labels(body.rating).inc()
    review = None
    if body.rating == "down":
        collection = await run_in_threadpool(services.records.query_collection, body.request_id, principal.tenant)
        item = await run_in_threadpool(services.reviews.queue_feedback, answered, tenant=principal.tenant,
                                       api_key_id=principal.key_id, collection=collection or "",
                                       rating=body.rating, comment=body.comment, correction=body.correction)
        review = services.reviews.ref(item)
    return FeedbackStored(feedback_id=feedback_id, request_id=body.request_id, rating=body.rating, review=review)

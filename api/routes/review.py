"""Human review over HTTP: the queue for reviewers (``/v1/review/...``) and the asker's poll
(``GET /v1/queries/{request_id}``).

Reviewer routes need a key with the role ``reviewer`` (403 otherwise) and show only the tenants the key
names (another tenant's item is 404, as if it did not exist). The flow for one item:

    GET  /v1/review/items?status=open&tenant=&collection=&risk=&kind=   oldest first
    GET  /v1/review/items/{id}                 everything a reviewer needs
    POST /v1/review/items/{id}/claim           a lease (ATTEST_REVIEW_LEASE_S); claim again to renew
    POST /v1/review/items/{id}/edit  {text}    verified against the item's sources; the result comes back
    POST /v1/review/items/{id}/approve         the draft, or the last edit made under this lease
    POST /v1/review/items/{id}/reject {reason, unanswerable}
    POST /v1/review/items/{id}/release         give the lease back undecided
    GET  /v1/review/items/{id}/audit           who did what, when, before and after
    GET  /v1/review/agreement                  agreement of double-reviewed items per tenant and kind

A transition the item's state does not allow (deciding without a lease, claiming an item someone else
holds, deciding a decided item) is 409 with the reason.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool

from api.auth import Principal
from api.deps import authenticate, get_services
from api.errors import Problem
from api.review import Conflict, NotFound, poll_url
from api.routes import problems
from api.schemas import (
    AgreementReport, AuditTrail, EditRequest, QueryResponse, RejectRequest, ReviewEditOut, ReviewItem,
    ReviewItemSummary, ReviewLease, ReviewList,
)
from api.services import Services

router = APIRouter(tags=["review"])
StatusFilter = Literal["pending", "claimed", "disputed", "approved", "edited", "rejected", "open", "decided", "all"]


def reviewer(principal: Principal = Depends(authenticate)) -> Principal:
    if not principal.reviewer:
        raise Problem(403, "not-a-reviewer", "Not a reviewer",
                      "this API key does not have the role 'reviewer' (ATTEST_API_KEYS roles)")
    return principal


def _not_found(item_id: str) -> Problem:
    return Problem(404, "review-item-not-found", "Review item not found",
                   f"no review item {item_id!r} for this API key's tenants")


async def _call(fn, *args, item_id: str = "", **kwargs):
    """Run a desk call off the event loop; its NotFound/Conflict become 404/409 problems."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except NotFound:
        raise _not_found(item_id) from None
    except Conflict as exc:
        raise Problem(409, "review-conflict", "Not allowed in the item's current state", str(exc)) from None


def _summary(item: dict) -> dict:
    claims = item["payload"]["response"].get("claims", [])
    return dict(
        id=item["id"], request_id=item["request_id"], kind=item["kind"], tenant=item["tenant"],
        collection=item["collection"], risk=item["risk"], question=item["question"], status=item["status"],
        reviews_required=item["reviews_required"], created_at=item["created_at"], decided_at=item["decided_at"],
        model=item["model"], prompt_version=item["prompt_version"],
        failing_claims=sum(1 for c in claims if c.get("verdict") != "supported"),
        leases=[ReviewLease(item_id=item["id"], **lease) for lease in item["leases"]])


def item_out(item: dict, edits: list[dict]) -> ReviewItem:
    payload = item["payload"]
    response = payload["response"]
    return ReviewItem(
        **_summary(item), draft=payload["draft"], decision=response.get("decision", ""),
        shown_answer=response.get("answer", ""), claims=response.get("claims", []),
        sources=response.get("sources", []), grounding_prompt=payload.get("grounding_prompt"),
        filters=payload.get("filters"), feedback=payload.get("feedback", []), decisions=item["decisions"],
        edits=edits, final_text=item["final_text"], final_reason=item["final_reason"],
        poll_url=poll_url(item["request_id"]))


async def _item(services: Services, principal: Principal, item_id: str) -> ReviewItem:
    item = await _call(services.reviews.item_for, principal, item_id, item_id=item_id)
    edits = await run_in_threadpool(services.reviews.store.edits, item_id)
    return item_out(item, edits)


@router.get("/v1/review/items", response_model=ReviewList, summary="Review items, oldest first",
            responses=problems(401, 403, 422))
async def list_items(status: StatusFilter = "open", tenant: str | None = None, collection: str | None = None,
                     risk: Literal["low", "high"] | None = None,
                     kind: Literal["failed_check", "feedback", "flagged"] | None = None,
                     limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0),
                     principal: Principal = Depends(reviewer),
                     services: Services = Depends(get_services)) -> ReviewList:
    desk = services.reviews
    items = await run_in_threadpool(desk.store.list, desk.tenants_of(principal), status, tenant, collection, risk,
                                    kind, limit, offset)
    return ReviewList(items=[ReviewItemSummary(**_summary(i)) for i in items], limit=limit, offset=offset)


@router.get("/v1/review/items/{item_id}", response_model=ReviewItem, summary="One review item, in full",
            responses=problems(401, 403, 404))
async def get_item(item_id: str, principal: Principal = Depends(reviewer),
                   services: Services = Depends(get_services)) -> ReviewItem:
    return await _item(services, principal, item_id)


@router.post("/v1/review/items/{item_id}/claim", response_model=ReviewLease,
             summary="Claim an item: a lease so no one else works on it", responses=problems(401, 403, 404, 409))
async def claim(item_id: str, principal: Principal = Depends(reviewer),
                services: Services = Depends(get_services)) -> ReviewLease:
    return ReviewLease(**await _call(services.reviews.claim, principal, item_id, item_id=item_id))


@router.post("/v1/review/items/{item_id}/release", response_model=ReviewItem, summary="Give a claim back undecided",
             responses=problems(401, 403, 404, 409))
async def release(item_id: str, principal: Principal = Depends(reviewer),
                  services: Services = Depends(get_services)) -> ReviewItem:
    await _call(services.reviews.release, principal, item_id, item_id=item_id)
    return await _item(services, principal, item_id)


@router.post("/v1/review/items/{item_id}/edit", response_model=ReviewEditOut,
             summary="Submit a corrected answer: it is verified and the result returned (approve to accept it)",
             responses=problems(400, 401, 403, 404, 409, 422))
async def edit(item_id: str, body: EditRequest, principal: Principal = Depends(reviewer),
               services: Services = Depends(get_services)) -> ReviewEditOut:
    return ReviewEditOut(**await _call(services.reviews.edit, principal, item_id, body.text, item_id=item_id))


@router.post("/v1/review/items/{item_id}/approve", response_model=ReviewItem,
             summary="Approve the draft (or your last edit under this claim)", responses=problems(401, 403, 404, 409))
async def approve(item_id: str, principal: Principal = Depends(reviewer),
                  services: Services = Depends(get_services)) -> ReviewItem:
    await _call(services.reviews.approve, principal, item_id, item_id=item_id)
    return await _item(services, principal, item_id)


@router.post("/v1/review/items/{item_id}/reject", response_model=ReviewItem, summary="Reject the answer, with a reason",
             responses=problems(400, 401, 403, 404, 409, 422))
async def reject(item_id: str, body: RejectRequest, principal: Principal = Depends(reviewer),
                 services: Services = Depends(get_services)) -> ReviewItem:
    await _call(services.reviews.reject, principal, item_id, body.reason, body.unanswerable, item_id=item_id)
    return await _item(services, principal, item_id)


@router.get("/v1/review/items/{item_id}/audit", response_model=AuditTrail, summary="The item's audit trail",
            responses=problems(401, 403, 404))
async def audit(item_id: str, principal: Principal = Depends(reviewer),
                services: Services = Depends(get_services)) -> AuditTrail:
    await _call(services.reviews.item_for, principal, item_id, item_id=item_id)
    entries = await run_in_threadpool(services.reviews.store.audit, item_id)
    return AuditTrail(item_id=item_id, entries=entries)


@router.get("/v1/review/agreement", response_model=AgreementReport,
            summary="How often two independent reviewers agreed, per tenant and per kind of item",
            responses=problems(401, 403))
async def agreement(principal: Principal = Depends(reviewer),
                    services: Services = Depends(get_services)) -> AgreementReport:
    desk = services.reviews
    return AgreementReport(**await run_in_threadpool(desk.store.agreement, desk.tenants_of(principal)))


@router.get("/v1/queries/{request_id}", response_model=QueryResponse, tags=["questions"],
            summary="An answer by request id: as served, waiting for review, or as a reviewer decided it",
            responses=problems(401, 404))
async def query_outcome(request_id: str, principal: Principal = Depends(authenticate),
                        services: Services = Depends(get_services)) -> QueryResponse:
    found = await run_in_threadpool(services.reviews.outcome, request_id, principal.tenant)
    if found is None:
        raise Problem(404, "request-not-found", "Request not found",
                      f"no answered question with request id {request_id!r} for this API key's tenant")
    return found

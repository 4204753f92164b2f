"""The reviewer page: server-rendered HTML over the same review desk as the API (api/review.py).

    GET  /review                      the queue: filters status, tenant, collection, risk, kind; oldest first
    GET  /review/items/{id}           one item: question, draft, claims (verdict, score, why it failed, evidence
                                      marked in its source), sources, and the actions
    POST /review/items/{id}/claim | release | edit {text} | approve | reject {reason, unanswerable}
    GET  /review/agreement            how often two reviewers agreed, per tenant and per kind
    GET  /review/sign-in, POST /review/sign-in {key}, POST /review/sign-out
    GET  /review/static/{name}        the page's CSS and JavaScript, shipped in the package

Sign-in takes a reviewer API key and starts a cookie session (api/review_session.py); every POST carries the
session's CSRF token (403 without it). A reviewer sees only their tenants' items: another tenant's item is a
404 page, as on the API. Actions that need a lease (edit, approve, reject) claim the item first when the
reviewer holds none, as the CLI does. Document text and model output are untrusted: the templates escape
everything (Jinja autoescape), and the Content-Security-Policy allows only this package's script and style.
These routes are not part of the OpenAPI schema (they are pages, not API).
"""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from api.auth import Principal, key_digest
from api.review import Conflict, NotFound
from api.review_session import COOKIE, OPEN, ReviewSessions, Session
from api.review_view import item_view, why_listed
from api.routes.review import _summary, item_out
from api.schemas import EditRequest, RejectRequest
from review.store import KINDS, STATUS_FILTERS, parse_iso

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
RISKS = ("low", "high")
ACTIONS = ("claim", "release", "edit", "approve", "reject")
SECURITY_HEADERS = {
    # Only this package's script and style run: even text that slipped past escaping could not execute.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
STALE_FORM = ("This form was not accepted: its security token is missing or out of date (the page may be older "
              "than your sign-in). Reload the page and try again.")


# ---- templates and static files ------------------------------------------------------------------------
def _templates():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
    from starlette.templating import Jinja2Templates

    env = Environment(loader=PackageLoader("api", "templates"), undefined=StrictUndefined,
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["ago"] = _ago
    env.filters["num"] = lambda v, d=2: "–" if v is None else f"{v:.{d}f}"
    return Jinja2Templates(env=env)


def _static():
    from importlib.resources import files

    from starlette.staticfiles import StaticFiles

    return StaticFiles(directory=str(files("api") / "static" / "review"))


_TEMPLATES = None
_STATIC = None


def templates():
    global _TEMPLATES
    if _TEMPLATES is None:
        _TEMPLATES = _templates()
    return _TEMPLATES


def _ago(when: str | None) -> str:
    """'4 min ago' for an ISO time (the page is read at a glance; the exact time is in its title)."""
    if not when:
        return ""
    seconds = max(0.0, datetime.now(timezone.utc).timestamp() - parse_iso(when))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


@router.get("/review/static/{name}")
async def static(name: str, request: Request) -> Response:
    global _STATIC
    if _STATIC is None:
        _STATIC = _static()
    response = await _STATIC.get_response(name, request.scope)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# ---- session -------------------------------------------------------------------------------------------
def _sessions(request: Request) -> ReviewSessions:
    state = request.app.state
    if getattr(state, "review_sessions", None) is None:
        state.review_sessions = ReviewSessions(state.settings)
    return state.review_sessions


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _principal(request: Request, session: Session | None) -> Principal | None:
    """The signed-in reviewer, looked up again by key digest (a revoked key or lost role signs them out)."""
    if session is None or session.key is None:
        return None
    keys = request.app.state.services.keys
    if keys.open_mode:
        principal = keys.open_principal()
    elif session.key == OPEN:
        return None
    else:
        principal = keys.lookup_digest(session.key)
    return principal if principal is not None and principal.reviewer else None


def _page(request: Request, name: str, session: Session | None, principal: Principal | None = None,
          status: int = 200, **context) -> HTMLResponse:
    return templates().TemplateResponse(
        request, f"review/{name}.html", {"principal": principal, "csrf": session.csrf if session else "",
                                         "open_mode": request.app.state.services.keys.open_mode, **context},
        status_code=status, headers=SECURITY_HEADERS)


def _to_sign_in(request: Request, note: str | None = None) -> RedirectResponse:
    query = {"next": request.url.path + (f"?{request.url.query}" if request.url.query else "")}
    if note:
        query["note"] = note
    return RedirectResponse(f"/review/sign-in?{urlencode(query)}", status_code=303, headers=SECURITY_HEADERS)


def _signed_in(request: Request) -> tuple[Session | None, Principal | None]:
    session = _sessions(request).read(request.cookies.get(COOKIE))
    return session, _principal(request, session)


def _error(request: Request, session, principal, status: int, title: str, detail: str) -> HTMLResponse:
    return _page(request, "error", session, principal, status=status, title=title, detail=detail)


async def _form(request: Request, session: Session | None):
    """The POSTed form, or None when its CSRF token does not match the session's."""
    form = await request.form()
    return form if ReviewSessions.csrf_ok(session, form.get("csrf")) else None


# ---- sign-in -------------------------------------------------------------------------------------------
def _safe_next(target: str | None) -> str:
    """Only a path of this page (never another site) to go back to after sign-in."""
    if target and target.startswith("/review") and not target.startswith("//") and "\\" not in target:
        return target
    return "/review"


@router.get("/review/sign-in")
async def sign_in_page(request: Request, next: str | None = None, note: str | None = None) -> HTMLResponse:
    sessions = _sessions(request)
    session = sessions.read(request.cookies.get(COOKIE))
    if session is None:
        session = sessions.new()
    notes = {"expired": "Your session ended: sign in again.",
             "signed-out": "You are signed out."}
    response = _page(request, "sign_in", session, None, next=_safe_next(next), note=notes.get(note or ""),
                     error=None)
    sessions.set_cookie(response, session, _secure(request))
    return response


@router.post("/review/sign-in")
async def sign_in(request: Request) -> Response:
    sessions = _sessions(request)
    session = sessions.read(request.cookies.get(COOKIE))
    form = await _form(request, session)
    if form is None:
        return _error(request, session, None, 403, "Sign-in refused", STALE_FORM)
    keys = request.app.state.services.keys
    key = str(form.get("key") or "").strip()
    target = _safe_next(form.get("next"))

    def refuse(status: int, error: str) -> HTMLResponse:
        return _page(request, "sign_in", session, None, status=status, next=target, note=None, error=error)

    if keys.open_mode:
        digest = OPEN
    else:
        if not key:
            return refuse(400, "Enter your reviewer API key.")
        principal = await run_in_threadpool(keys.lookup, key)
        if principal is None:
            return refuse(401, "That API key is not valid (it may have been revoked).")
        if not principal.reviewer:
            return refuse(403, "That API key is not a reviewer key: it does not have the role “reviewer”. "
                               "Ask for a key with roles [\"reviewer\"] and the tenants you review "
                               "(review_tenants).")
        digest = key_digest(key)
    fresh = sessions.new(digest)  # a new CSRF token with every sign-in
    response = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
    sessions.set_cookie(response, fresh, _secure(request))
    return response


@router.post("/review/sign-out")
async def sign_out(request: Request) -> Response:
    session, principal = _signed_in(request)
    if await _form(request, session) is None:
        return _error(request, session, principal, 403, "Sign-out refused", STALE_FORM)
    response = RedirectResponse("/review/sign-in?note=signed-out", status_code=303, headers=SECURITY_HEADERS)
    ReviewSessions.clear_cookie(response, _secure(request))
    return response


# ---- the queue -----------------------------------------------------------------------------------------
@router.get("/review")
async def queue(request: Request, status: str = "open", tenant: str = "", collection: str = "", risk: str = "",
                kind: str = "", offset: str = "0") -> Response:
    session, principal = _signed_in(request)
    if principal is None:
        return _to_sign_in(request, "expired" if session and session.key else None)
    problems = []
    if status not in STATUS_FILTERS:
        problems.append(f"status must be one of {', '.join(STATUS_FILTERS)}")
    if risk and risk not in RISKS:
        problems.append(f"risk must be one of {', '.join(RISKS)}")
    if kind and kind not in KINDS:
        problems.append(f"kind must be one of {', '.join(KINDS)}")
    start = int(offset) if offset.isdigit() else -1
    if start < 0:
        problems.append("offset must be a whole number, 0 or more")
    filters = {"status": status, "tenant": tenant, "collection": collection, "risk": risk, "kind": kind}
    items = []
    if not problems:
        desk = request.app.state.services.reviews
        rows = await run_in_threadpool(desk.store.list, desk.tenants_of(principal), status, tenant or None,
                                       collection or None, risk or None, kind or None, PAGE_SIZE + 1, start)
        items = [{**_summary(r), "why": why_listed(r)} for r in rows]
    more = len(items) > PAGE_SIZE
    page_of = lambda at: "/review?" + urlencode({**{k: v for k, v in filters.items() if v}, "offset": at})  # noqa
    return _page(request, "list", session, principal, status=422 if problems else 200,
                 items=items[:PAGE_SIZE], filters=filters, problems=problems, statuses=STATUS_FILTERS, kinds=KINDS,
                 risks=RISKS, tenants=principal.review_tenants,
                 newer=page_of(start + PAGE_SIZE) if more else None,
                 older=page_of(max(0, start - PAGE_SIZE)) if start > 0 else None)


@router.get("/review/agreement")
async def agreement(request: Request) -> Response:
    session, principal = _signed_in(request)
    if principal is None:
        return _to_sign_in(request, "expired" if session and session.key else None)
    desk = request.app.state.services.reviews
    report = await run_in_threadpool(desk.store.agreement, desk.tenants_of(principal))
    return _page(request, "agreement", session, principal, report=report)


# ---- one item ------------------------------------------------------------------------------------------
def _item_context(desk, principal: Principal, item_id: str) -> dict:
    """What the item page needs, read in one go (raises NotFound for another tenant's item)."""
    item = desk.item_for(principal, item_id)
    edits = desk.store.edits(item_id)
    out = item_out(item, edits).model_dump(mode="json")
    lease = next((l for l in item["leases"] if l["reviewer"] == principal.key_id), None)
    mine = desk.store.latest_edit(item_id, principal.key_id, since=lease["claimed_at"]) if lease else None
    response = item["payload"]["response"]
    view = item_view(out, flag=item["payload"].get("flag"), answer_check=response.get("answer_check"), mine=mine)
    is_open = item["stored_status"] in ("pending", "disputed")
    reviewed = any(d["reviewer"] == principal.key_id for d in item["decisions"])
    others = [l for l in item["leases"] if l["reviewer"] != principal.key_id]
    # Reviews still wanted (a disputed item wants one more: the tiebreak) less those someone holds now.
    wanted = 1 if item["stored_status"] == "disputed" else item["reviews_required"] - len(item["decisions"])
    following = [i for i in desk.store.list(desk.tenants_of(principal), "pending", limit=2) if i["id"] != item_id]
    return {"item": out, "view": view, "lease": lease, "is_open": is_open, "reviewed": reviewed,
            "others": others, "next_id": following[0]["id"] if following else None,
            "can_claim": is_open and lease is None and not reviewed and wanted > len(others),
            "notice": response.get("notice"), "asked_decision": response.get("decision")}


@router.get("/review/items/{item_id}")
async def item_page(request: Request, item_id: str, done: str | None = None) -> Response:
    session, principal = _signed_in(request)
    if principal is None:
        return _to_sign_in(request, "expired" if session and session.key else None)
    desk = request.app.state.services.reviews
    try:
        context = await run_in_threadpool(_item_context, desk, principal, item_id)
    except NotFound:
        return _not_found(request, session, principal, item_id)
    return _page(request, "item", session, principal, done=done if done in ACTIONS else None, error=None,
                 edit_text=None, reject_reason=None, **context)


def _not_found(request, session, principal, item_id: str) -> HTMLResponse:
    return _error(request, session, principal, 404, "Review item not found",
                  f"There is no review item “{item_id}” among the tenants you review.")


def _act(desk, principal: Principal, item_id: str, action: str, form) -> None:
    """One reviewer action through the desk (the same checks and audit trail as the API)."""
    if action == "claim":
        desk.claim(principal, item_id)
        return
    if action == "release":
        desk.release(principal, item_id)
        return
    if action == "edit":
        body = EditRequest(text=str(form.get("text") or ""))
    elif action == "reject":
        body = RejectRequest(reason=str(form.get("reason") or ""), unanswerable=form.get("unanswerable") == "on")
    item = desk.item_for(principal, item_id)
    if not any(l["reviewer"] == principal.key_id for l in item["leases"]):
        desk.claim(principal, item_id)  # as the CLI does: deciding means taking the item first
    if action == "edit":
        desk.edit(principal, item_id, body.text)
    elif action == "approve":
        desk.approve(principal, item_id)
    else:
        desk.reject(principal, item_id, body.reason, body.unanswerable)


def _invalid(exc: ValidationError, action: str) -> str:
    field = "your text" if action == "edit" else "the reason"
    named = field[0].upper() + field[1:]
    problems = {e.get("type") for e in exc.errors()}
    if problems & {"string_too_short", "string_pattern_mismatch", "missing"}:
        return f"Nothing to submit: {field} is empty."
    if "string_too_long" in problems:
        return f"{named} is too long ({20000 if action == 'edit' else 5000} characters at most)."
    return f"{named} was not accepted: " + "; ".join(e.get("msg", "") for e in exc.errors())


@router.post("/review/items/{item_id}/{action}")
async def item_action(request: Request, item_id: str, action: str) -> Response:
    session, principal = _signed_in(request)
    form = await _form(request, session)
    if form is None:
        return _error(request, session, principal, 403, "Action refused", STALE_FORM)
    if principal is None:
        return _to_sign_in(request, "expired" if session and session.key else None)
    if action not in ACTIONS:
        return _error(request, session, principal, 404, "No such action",
                      f"“{action}” is not an action on review items (one of: {', '.join(ACTIONS)}).")
    desk = request.app.state.services.reviews
    try:
        await run_in_threadpool(_act, desk, principal, item_id, action, form)
    except NotFound:
        return _not_found(request, session, principal, item_id)
    except (Conflict, ValidationError) as exc:
        error = str(exc) if isinstance(exc, Conflict) else _invalid(exc, action)
        status = 409 if isinstance(exc, Conflict) else 422
        try:
            context = await run_in_threadpool(_item_context, desk, principal, item_id)
        except NotFound:
            return _not_found(request, session, principal, item_id)
        return _page(request, "item", session, principal, status=status, done=None, error=error,
                     edit_text=form.get("text") if action == "edit" else None,
                     reject_reason=form.get("reason") if action == "reject" else None, **context)
    anchor = "#your-edit" if action == "edit" else ""
    return RedirectResponse(f"/review/items/{item_id}?done={action}{anchor}", status_code=303,
                            headers=SECURITY_HEADERS)

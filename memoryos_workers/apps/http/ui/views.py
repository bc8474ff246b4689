"""/ui: the overview (users, counters, queues, retrieval latency, dead letters) and one page per user
(every tier, heat per segment, and a query box that runs a retrieval).

Sign-in takes an API key and sets a session cookie signed with it (HttpOnly, SameSite=Strict); every
form carries a token bound to that session. Pages read the same functions as the JSON routes, through
the same `Principal`, so a tenant sees only its own users. The retrieval query is sent by POST, so the
user's words never land in an access log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from memoryos_workers.apps.http.auth import SESSION_COOKIE, SESSION_SECONDS, Principal, keyring
from memoryos_workers.apps.http.errors import InvalidInput
from memoryos_workers.apps.http.routes import memory_of, operations, path_user, users
from memoryos_workers.apps.http.routes.retrieval import run_retrieval
from memoryos_workers.apps.http.ui import charts
from memoryos_workers.counters import LATENCY_BUCKETS_MS

HERE = Path(__file__).resolve().parent
# Autoescaping on for every template: stored text (a turn saying <script>) always shows as text.
templates = Jinja2Templates(env=jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True))
router = APIRouter(prefix="/ui", include_in_schema=False)
USERS_PER_PAGE = 200


class SignInRequired(Exception):
    pass


def mount(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=str(HERE / "static")), name="ui-static")
    app.add_exception_handler(SignInRequired, lambda _r, _e: RedirectResponse("/ui/login", status_code=303))


def _principal(request: Request) -> Principal:
    principal = keyring(request).from_session(request.cookies.get(SESSION_COOKIE))
    if principal is None:
        raise SignInRequired()
    return principal


async def _checked_form(request: Request) -> tuple[Principal, dict[str, Any]]:
    """A form post of a signed-in page: its session, and a token only that page could have."""
    principal = _principal(request)
    form = dict(await request.form())
    if not keyring(request).check_csrf(request.cookies.get(SESSION_COOKIE), form.get("csrf")):
        raise SignInRequired()
    return principal, form


def _page(request: Request, name: str, principal: Principal | None, status: int = 200, **context: Any) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    context.update(tenant=principal.tenant if principal else None,
                   csrf=keyring(request).csrf_token(cookie) if cookie and principal else "")
    return templates.TemplateResponse(request, name, context, status_code=status)


# -- sign-in ----------------------------------------------------------------------------------------
@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    return _page(request, "login.html", None)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    key = form.get("api_key")
    session = keyring(request).session_for(key) if isinstance(key, str) and key else None
    if session is None:
        return _page(request, "login.html", None, status=401, error="That key is not valid.")
    response = RedirectResponse("/ui", status_code=303)
    response.set_cookie(SESSION_COOKIE, session, max_age=SESSION_SECONDS, path="/ui", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    await _checked_form(request)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/ui")
    return response


# -- overview -----------------------------------------------------------------------------------------
@router.get("", response_class=HTMLResponse)
def overview(request: Request, after: str | None = None, replayed: int | None = None) -> Response:
    principal = _principal(request)
    try:
        listed = users.list_users(request, principal, limit=USERS_PER_PAGE, after=after)
    except InvalidInput:
        listed = {"users": [], "next": None}
    stats = memory_of(request).stats()
    queues = {k.removeprefix("queue_"): v for k, v in stats.items() if k.startswith("queue_")}
    bounds = [*LATENCY_BUCKETS_MS, "inf"]
    latency = charts.vertical("retrieval latency (ms)", [f"≤{b}" if b != "inf" else ">1000" for b in bounds],
                              [stats.get(f"retrieval_ms_le_{b}", 0) for b in bounds])
    counters = {k: v for k, v in sorted(stats.items()) if not k.startswith(("queue_", "retrieval_ms_le_"))}
    return _page(request, "overview.html", principal, users=listed["users"], next_after=listed["next"],
                 counters=counters, queues=queues, latency=latency,
                 dead=operations.dead_letters(request, principal), replayed=replayed)


@router.post("/dead-letters/replay")
async def replay(request: Request) -> Response:
    principal, form = await _checked_form(request)
    user_id = form.get("user_id") or None
    done = await run_in_threadpool(operations.replay, request, principal, user_id, "form")
    count = sum(v.get("batches", 0) + v.get("persona_pages", 0) for v in done.values())
    return RedirectResponse(f"/ui?replayed={count}", status_code=303)


# -- one user -----------------------------------------------------------------------------------------
def _user_page(request: Request, principal: Principal, user_id: str, status: int = 200, **extra: Any) -> Response:
    view = users.inspect_view(request, principal, user_id)
    tau = memory_of(request).settings.mid_term_heat_threshold
    segments = view["segments"]
    heat = charts.horizontal("heat per segment", [s["theme"] or s["segment_id"][:8] for s in segments],
                             [s["heat"] for s in segments], threshold=tau)
    facts = memory_of(request).list_facts(path_user(principal, user_id), history=True)
    fact_rows = principal.outward([{**e.model_dump(mode="json"), "held": e.window()} for e in facts])
    return _page(request, "user.html", principal, status=status, user_id=user_id, view=view, heat=heat, tau=tau,
                 user_path=quote(user_id, safe=""), fact_rows=fact_rows, **extra)


@router.get("/users/{user_id}", response_class=HTMLResponse)
def user(request: Request, user_id: str, fact: str | None = None) -> Response:
    return _user_page(request, _principal(request), user_id, fact_done=fact if fact in FACT_DONE else None)


FACT_DONE = ("added", "corrected", "pinned", "unpinned", "deleted")


@router.post("/users/{user_id}/query", response_class=HTMLResponse)
async def query(request: Request, user_id: str) -> Response:
    principal, form = await _checked_form(request)
    text = str(form.get("query") or "")
    top_k = str(form.get("top_k") or "").strip()
    try:
        body = {"query": text, "top_k": int(top_k) if top_k else None}
        answer = await run_in_threadpool(run_retrieval, request, principal, user_id, body, "form")
    except (InvalidInput, ValueError) as exc:
        problems = exc.problems if isinstance(exc, InvalidInput) else [("form.top_k", "must be a whole number")]
        return await run_in_threadpool(_user_page, request, principal, user_id, 422, query=text, problems=problems)
    return await run_in_threadpool(_user_page, request, principal, user_id, query=text, answer=answer)


# -- a person corrects the user's facts ------------------------------------------------------------------
FACT_ACTIONS = ("correct", "pin", "unpin", "delete")


def _fact_edit(request: Request, principal: Principal, user_id: str, fact_id: str | None, form: dict[str, Any],
               ) -> str:
    """One edit through the memory interface, recorded as the signed-in tenant's; what was done."""
    memory, stored = memory_of(request), path_user(principal, user_id)
    by, action, text = f"inspector:{principal.tenant}", form.get("action"), form.get("text")
    if fact_id is None:
        memory.add_fact(stored, str(text or ""), pinned=form.get("pinned") == "on", by=by)
        return "added"
    if action == "delete":
        memory.delete_fact(stored, fact_id, by=by)
    elif action == "correct":
        memory.correct_fact(stored, fact_id, text=str(text or ""), by=by)
    elif action in ("pin", "unpin"):
        memory.pin_fact(stored, fact_id, action == "pin", by=by)
    else:
        raise ValueError(f"action: must be one of {', '.join(FACT_ACTIONS)}")
    return {"correct": "corrected", "delete": "deleted"}.get(str(action), f"{action}ned")


async def _edit_and_show(request: Request, user_id: str, fact_id: str | None) -> Response:
    principal, form = await _checked_form(request)
    try:
        done = await run_in_threadpool(_fact_edit, request, principal, user_id, fact_id, form)
    except (InvalidInput, ValueError) as exc:
        problems = exc.problems if isinstance(exc, InvalidInput) else [("form", str(exc))]
        return await run_in_threadpool(_user_page, request, principal, user_id, 422, fact_problems=problems)
    return RedirectResponse(f"/ui/users/{quote(user_id, safe='')}?fact={done}#facts", status_code=303)


@router.post("/users/{user_id}/facts", response_class=HTMLResponse)
async def add_fact(request: Request, user_id: str) -> Response:
    return await _edit_and_show(request, user_id, None)


@router.post("/users/{user_id}/facts/{fact_id}", response_class=HTMLResponse)
async def edit_fact(request: Request, user_id: str, fact_id: str) -> Response:
    return await _edit_and_show(request, user_id, fact_id)

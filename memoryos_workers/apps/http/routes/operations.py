"""Operators' routes: dead letters (list, replay) and the deployment's counters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from memoryos_workers.apps.http.answers import DeadLetters, Replayed, ok
from memoryos_workers.apps.http.auth import Principal, require_principal
from memoryos_workers.apps.http.errors import responses
from memoryos_workers.apps.http.routes import ID_SCHEMA, V1_ERRORS, body_doc, memory_of, parse_json, query_user

router = APIRouter(prefix="/v1", tags=["operations"], responses=V1_ERRORS)


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: str | None = Field(None, description="Only this user's dead letters (default: all of the tenant's).",
                                json_schema_extra=ID_SCHEMA)


def dead_letters(request: Request, principal: Principal, user_id: str | None = None) -> list[dict[str, Any]]:
    """A tenant key sees only its own users' dead letters."""
    rows = memory_of(request).dead_letters(query_user(principal, user_id))
    return principal.outward([r for r in rows if principal.owns(r["user_id"])])  # type: ignore[no-any-return]


def replay(request: Request, principal: Principal, user_id: str | None = None, where: str = "body",
           ) -> dict[str, Any]:
    memory = memory_of(request)
    stored = query_user(principal, user_id, where)
    if stored is None and not principal.admin:  # the tenant's users with dead letters, one by one
        users = sorted({r["user_id"] for r in memory.dead_letters(None) if principal.owns(r["user_id"])})
        done = {u: memory.replay(u)[u] for u in users}
    else:
        done = memory.replay(stored)
    return {principal.known_as(u): counts for u, counts in done.items()}


@router.get("/dead-letters", summary="Failed batches and persona extractions, with their errors",
            response_model=None, responses={**ok(DeadLetters), **responses(422)})
def list_dead_letters(
    request: Request, principal: Principal = Depends(require_principal),
    user_id: str | None = Query(None, json_schema_extra=ID_SCHEMA),
) -> dict[str, Any]:
    return {"dead_letters": dead_letters(request, principal, user_id)}


@router.post("/dead-letters/replay", summary="Put dead letters back in line (once the cause is fixed)",
             openapi_extra=body_doc(ReplayIn, required=False), response_model=None,
             responses={**ok(Replayed), **responses(422)})
async def replay_dead_letters(request: Request, principal: Principal = Depends(require_principal)) -> dict[str, Any]:
    body = parse_json(await request.body(), ReplayIn)
    return {"replayed": await run_in_threadpool(replay, request, principal, body.user_id)}


@router.get("/stats", summary="The deployment's counters and gauges", response_model=None,
            responses=ok(dict[str, float], "Counts and gauges by name: numbers only."))
def stats(request: Request, _principal: Principal = Depends(require_principal)) -> dict[str, Any]:
    """The same numbers as `memoryos stats`: LLM calls and tokens (also by purpose), fallbacks, retries,
    dead letters, waits for the token budget, retrievals with a latency histogram, messages waiting per
    queue, pending batches, users waiting for the sweep and how late the most overdue is. Deployment-wide
    sums: they name no user and hold no stored text."""
    return memory_of(request).stats()

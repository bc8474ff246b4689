"""A tenant's users: list them, inspect one, read the profile, export everything, forget."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from memoryos_workers.apps.http.answers import Forgotten, Persona, UsersPage, UserView, ok
from memoryos_workers.apps.http.auth import Principal, require_principal
from memoryos_workers.apps.http.errors import InvalidInput, responses
from memoryos_workers.apps.http.routes import ID_SCHEMA, V1_ERRORS, UserPath, known_user, memory_of, path_user

router = APIRouter(prefix="/v1", tags=["users"], responses=V1_ERRORS)
MAX_PAGE = 1000


@router.get("/users", summary="List users (ids in order, a page at a time)", response_model=None,
            responses={**ok(UsersPage), **responses(422)})
def list_users(
    request: Request,
    principal: Principal = Depends(require_principal),
    limit: int = Query(100, ge=1, le=MAX_PAGE),
    after: str | None = Query(None, description="The last id of the previous page.", json_schema_extra=ID_SCHEMA),
) -> dict[str, Any]:
    """Users who published (through this API or `producers`); a tenant key lists only its own."""
    stored_after = None
    if after is not None:
        try:
            stored_after = principal.user(after, "after")
        except ValueError as exc:
            raise InvalidInput.from_value_error(exc, "query", "after") from None
    stored = memory_of(request).users(principal.user_prefix, stored_after, limit)
    users = [principal.known_as(u) for u in stored]
    return {"users": users, "next": users[-1] if len(users) == limit else None}


def inspect_view(request: Request, principal: Principal, user_id: str) -> dict[str, Any]:
    view = memory_of(request).inspect(path_user(principal, user_id))
    return principal.outward(view)  # type: ignore[no-any-return]


@router.get("/users/{user_id}", summary="What each tier holds for a user", response_model=None,
            responses={**ok(UserView), **responses(404, 422)})
def inspect(user_id: UserPath, request: Request, principal: Principal = Depends(require_principal)) -> dict[str, Any]:
    """Short-term and pending turns, recent mid-term pages, segments with their heat, profile and facts;
    404 for a user with nothing stored (never published, or forgotten)."""
    known_user(request, principal, user_id)
    return inspect_view(request, principal, user_id)


@router.get("/users/{user_id}/profile", summary="The user's profile and facts", response_model=None,
            responses={**ok(Persona), **responses(404, 422)})
def profile(
    user_id: UserPath,
    request: Request,
    principal: Principal = Depends(require_principal),
    assistant_id: str | None = Query(None, description="Whose assistant facts (default: the deployment's).",
                                     json_schema_extra=ID_SCHEMA),
) -> dict[str, Any]:
    stored_user = known_user(request, principal, user_id)
    try:
        assistant = principal.assistant(assistant_id)
    except ValueError as exc:
        raise InvalidInput.from_value_error(exc, "query", "assistant_id") from None
    persona = memory_of(request).persona(stored_user, assistant).model_dump(mode="json")
    return principal.outward({"user_id": stored_user, **persona})  # type: ignore[no-any-return]


@router.get("/users/{user_id}/export", summary="Every stored record of the user, as JSON Lines",
            response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                             "description": "One JSON record per line."},
                       **responses(404, 422)})
def export(user_id: UserPath, request: Request, principal: Principal = Depends(require_principal)) -> StreamingResponse:
    """Turns of every tier (each once, in publish order), segments, the profile, settings and facts; the
    same records as `memoryos export`, which `memoryos import` reads back."""
    records = memory_of(request).export(known_user(request, principal, user_id))
    first = next(records, None)  # fail here (a 503, a 422) rather than inside a started 200 stream

    def lines() -> Iterator[bytes]:
        if first is None:
            return
        for record in _chain(first, records):
            yield (json.dumps(principal.outward(record), ensure_ascii=False) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def _chain(first: dict[str, Any], rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield first
    yield from rest


@router.delete("/users/{user_id}", summary="Forget a user: delete every tier", response_model=None,
               responses={**ok(Forgotten), **responses(422)})
def forget(user_id: UserPath, request: Request, principal: Principal = Depends(require_principal)) -> dict[str, Any]:
    """Deletes short-term, pending, mid-term, profile and facts, also while work is in flight (it waits
    for that work to stop); reports what was removed, by tier. Safe to repeat."""
    removed = memory_of(request).forget(path_user(principal, user_id))
    return {"user_id": user_id, "removed": removed}

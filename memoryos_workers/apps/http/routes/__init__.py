"""The JSON API, one module per resource; helpers every route uses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import HTTPException, Path, Request
from pydantic import BaseModel, ValidationError

from memoryos_workers.apps.http.auth import Principal
from memoryos_workers.apps.http.errors import InvalidInput, responses
from memoryos_workers.interface import Memory
from schemas.turns import ID_PATTERN

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

# Every /v1 route can answer these (a missing key, a body over the limit, Redis or the store away, a bug).
V1_ERRORS = responses(401, 413, 500, 503)
# The id rule in the document; the check itself stays schemas.turns.check_id (after the tenant's prefix
# is added, an id must still fit in 128 characters: a 422 names it when not).
ID_SCHEMA = {"pattern": ID_PATTERN}
UserPath = Annotated[
    str, Path(description="The user's id, in the key's tenant.", examples=["u1"], json_schema_extra=ID_SCHEMA)
]


def memory_of(request: Request) -> Memory:
    return request.app.state.memory  # type: ignore[no-any-return]


async def in_thread(request: Request, fn: Callable[..., T], *args: Any) -> T:
    """Blocking work off the event loop on the app's own threads (see app.py: cheaper than anyio's)."""
    return await asyncio.get_running_loop().run_in_executor(request.app.state.publish_threads, fn, *args)


def path_user(principal: Principal, user_id: str) -> str:
    """The stored id of the user a path names (422 naming path.user_id when it is not a valid id)."""
    try:
        return principal.user(user_id)
    except ValueError as exc:
        raise InvalidInput.from_value_error(exc, "path", "user_id") from None


def known_user(request: Request, principal: Principal, user_id: str) -> str:
    """The stored id of a user the path names that exists (it published and was not forgotten: it is in
    the user index); 422 for an invalid id, 404 for a user with nothing stored."""
    stored = path_user(principal, user_id)
    # The index lists ids in order from a prefix: the stored id itself comes first when it is there.
    if memory_of(request).users(stored, None, 1) != [stored]:
        raise HTTPException(404, f"nothing is stored for user {user_id!r}: it never published, or it was forgotten")
    return stored


def query_user(principal: Principal, user_id: str | None, where: str = "query") -> str | None:
    """The stored id of an optional user a query parameter or body field names."""
    if user_id is None:
        return None
    try:
        return principal.user(user_id)
    except ValueError as exc:
        raise InvalidInput.from_value_error(exc, where, "user_id") from None


def parse_json(raw: bytes, model: type[M] | None = None, where: str = "body") -> Any:
    """A JSON body whatever its Content-Type says (curl -d sends form's), validated by `model`; 422
    naming the field otherwise."""
    empty = not raw.strip()  # no body at all: the model's defaults (a JSON null is a value, and not an object)
    try:
        value = None if empty else json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput([(where, f"is not valid JSON ({exc})")]) from None
    if model is None:
        return value
    try:
        return model.model_validate({} if empty else value)
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc, where) from None


def body_doc(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """The OpenAPI requestBody of a route that reads its body with parse_json."""
    return {"requestBody": {"required": required,
                            "content": {"application/json": {"schema": model.model_json_schema()}}}}

"""The JSON API, one module per resource; helpers every route uses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from memoryos_workers.apps.http.auth import Principal
from memoryos_workers.apps.http.errors import InvalidInput
from memoryos_workers.interface import Memory

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


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
    try:
        value = json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput([(where, f"is not valid JSON ({exc})")]) from None
    if model is None:
        return value
    try:
        return model.model_validate({} if value is None else value)
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc, where) from None


def body_doc(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """The OpenAPI requestBody of a route that reads its body with parse_json."""
    return {"requestBody": {"required": required,
                            "content": {"application/json": {"schema": model.model_json_schema()}}}}

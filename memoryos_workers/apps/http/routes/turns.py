"""POST /v1/users/{user_id}/turns: one turn or a list, stored in one round trip to Redis.

The same validation as `producers.publish_turn` (schemas.turns.Turn), every turn checked before any
is stored; `turn_id` is the idempotency key (a repeat within MEMORYOS_DEDUPE_WINDOW stores nothing).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memoryos_workers.apps.http.auth import Principal, require_principal
from memoryos_workers.apps.http.errors import InvalidInput, TooLarge, responses
from memoryos_workers.apps.http.routes import (
    ID_SCHEMA,
    V1_ERRORS,
    UserPath,
    in_thread,
    memory_of,
    parse_json,
    path_user,
)
from memoryos_workers.interface import Memory
from schemas.turns import Turn

router = APIRouter(prefix="/v1", tags=["turns"], responses=V1_ERRORS)
MAX_PROBLEMS = 50  # invalid turns named in one answer


_NOT_BLANK = r"\S"


class TurnIn(BaseModel):
    """One exchange (documentation of the body; validation is `schemas.turns.Turn`'s)."""

    # Not both blank: one of the two holds a character that is not white space.
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "anyOf": [
            {"properties": {"user_input": {"type": "string", "pattern": _NOT_BLANK}}},
            {"properties": {"agent_response": {"type": "string", "pattern": _NOT_BLANK}}},
        ],
        "examples": [{"user_input": "My cat is called Pimenta.", "agent_response": "What a lovely name!",
                      "turn_id": "chat-42-turn-7", "timestamp": "2025-05-01T14:30:00+02:00"}],
    })

    user_input: str | None = Field(description="What the user said (at most MEMORYOS_MAX_TEXT_CHARS characters, no "
                                   "NUL; null counts as empty).")
    agent_response: str | None = Field(description="What the assistant answered; not both blank.")
    assistant_id: str | None = Field(None, description="The assistant (default: the deployment's).",
                                     json_schema_extra=ID_SCHEMA)
    timestamp: str | None = Field(None, description="ISO 8601; default now; without a zone read in MEMORYOS_TIMEZONE.")
    turn_id: str | None = Field(None, description="Your idempotency key (default: a new uuid).",
                                json_schema_extra=ID_SCHEMA)
    metadata: dict[str, Any] | None = Field(None, description="A JSON object of at most MEMORYOS_MAX_METADATA_BYTES.")


class Published(BaseModel):
    user_id: str
    turn_ids: list[str] = Field(description="In the order given; a repeated turn_id is stored once.")


_TURN = TurnIn.model_json_schema()
BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"oneOf": [_TURN, {"type": "array", "items": _TURN, "minItems": 1}]}}
        },
    }
}


@router.post("/users/{user_id}/turns", status_code=202, response_model=Published, openapi_extra=BODY_DOC,
             responses=responses(422), summary="Publish one turn or a list of turns")
async def publish(user_id: UserPath, request: Request, principal: Principal = Depends(require_principal)) -> Response:
    memory = memory_of(request)
    stored_user = path_user(principal, user_id)
    items, bulk = _items(await request.body(), memory.settings.api_max_turns)
    turns, problems = [], []
    for index, item in enumerate(items):
        try:
            turns.append(_turn(memory, principal, stored_user, item, f"body[{index}]" if bulk else "body"))
        except InvalidInput as exc:
            problems.extend(exc.problems)
    if problems:
        raise InvalidInput(problems[:MAX_PROBLEMS])
    turn_ids = await in_thread(request, memory.publish, turns)
    # A Response skips FastAPI's re-validation of the answer (response_model stays for the docs).
    return JSONResponse({"user_id": user_id, "turn_ids": turn_ids}, status_code=202)


def _items(raw: bytes, max_turns: int) -> tuple[list[Any], bool]:
    body = parse_json(raw)
    if isinstance(body, dict):
        return [body], False
    if not isinstance(body, list):
        raise InvalidInput([("body", f"must be a turn (JSON object) or a list of them, not {type(body).__name__}")])
    if not body:
        raise InvalidInput([("body", "is an empty list; send at least one turn")])
    if len(body) > max_turns:
        raise TooLarge(f"{len(body)} turns in one request, over the limit of {max_turns} (MEMORYOS_API_MAX_TURNS)")
    return body, True


def _turn(memory: Memory, principal: Principal, user_id: str, item: Any, where: str) -> Turn:
    if not isinstance(item, dict):
        raise InvalidInput([(where, f"must be a JSON object, not {type(item).__name__}")])
    if "user_id" in item:
        raise InvalidInput([(f"{where}.user_id", "the path names the user; leave user_id out of the body")])
    if "turn_id" in item and item["turn_id"] is None:  # null is the default, as for every optional field
        item = {k: v for k, v in item.items() if k != "turn_id"}
    try:
        assistant_id = principal.assistant(item.get("assistant_id"))
    except ValueError as exc:
        raise InvalidInput.from_value_error(exc, where, "assistant_id") from None
    try:
        return memory.make_turn({**item, "user_id": user_id, "assistant_id": assistant_id})
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc, where) from None

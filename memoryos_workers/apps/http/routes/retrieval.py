"""POST /v1/users/{user_id}/retrieve: the memory context for a query, as JSON plus the rendered prompt.

The body is `schemas.query.RetrievalRequest` without the user (the path names it): an option added to
that model is accepted, documented and passed on here without a change. The whole `RetrievedContext` is
returned (the document describes it through answers.RetrieveAnswer), so fields retrieval gains later reach
API clients without a change either.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from memoryos_workers.apps.http.answers import RetrieveAnswer, ok
from memoryos_workers.apps.http.auth import Principal, require_principal
from memoryos_workers.apps.http.errors import InvalidInput, responses
from memoryos_workers.apps.http.routes import V1_ERRORS, UserPath, memory_of, parse_json, path_user
from schemas.query import RetrievalRequest
from schemas.tokens import estimate_tokens

router = APIRouter(prefix="/v1", tags=["retrieval"], responses=V1_ERRORS)


def body_schema() -> dict[str, Any]:
    """RetrievalRequest's JSON schema without user_id (the path's)."""
    schema = RetrievalRequest.model_json_schema()
    schema["properties"].pop("user_id", None)
    schema["required"] = [name for name in schema.get("required", []) if name != "user_id"]
    schema["title"] = "RetrieveIn"
    schema["description"] = "What to retrieve for the user the path names (schemas.query.RetrievalRequest)."
    schema.pop("$defs", None)  # the fields' own schemas (json_schema_extra) stand alone
    return schema


BODY_DOC = {"requestBody": {"required": True, "content": {"application/json": {"schema": body_schema()}}}}


def prompt_tokens(prompt: str) -> int:
    """Measured as the context budget measures it (schemas/tokens.py), so it is in the unit of max_tokens."""
    return estimate_tokens(prompt)


def run_retrieval(request: Request, principal: Principal, user_id: str, body: Any, where: str = "body",
                  ) -> dict[str, Any]:
    """Shared by the API and the inspector's query box: the context (ids as the tenant knows them), its
    prompt and the prompt's token count."""
    memory = memory_of(request)
    wanted = _request(principal, path_user(principal, user_id), body, where, memory.settings.max_text_chars)
    try:
        context = memory.retrieve(wanted)
    except ValueError as exc:  # checks that need the settings: "query: longer than ..."
        raise InvalidInput.from_value_error(exc, where, "query") from None
    prompt = context.to_prompt()
    answer = principal.outward(context.model_dump(mode="json"))
    answer["prompt"] = prompt
    answer["prompt_tokens"] = prompt_tokens(prompt)
    return answer  # type: ignore[no-any-return]


def _request(principal: Principal, user: str, body: Any, where: str, max_text_chars: int) -> RetrievalRequest:
    """The body as a RetrievalRequest of the tenant's ids: its assistant (the body's, else the filter's, as
    in-process retrieval has it, else the tenant's default) and filters scoped to the tenant."""
    if not isinstance(body, dict):
        raise InvalidInput([(where, f"must be a JSON object, not {type(body).__name__}")])
    if "user_id" in body:
        raise InvalidInput([(f"{where}.user_id", "the path names the user; leave user_id out of the body")])
    data = dict(body)
    try:
        if data.get("assistant_id") is not None:
            data["assistant_id"] = principal.assistant(data["assistant_id"])
    except ValueError as exc:
        raise InvalidInput.from_value_error(exc, where, "assistant_id") from None
    try:
        data["filters"] = principal.filters(data.get("filters"))
    except ValueError as exc:
        raise InvalidInput.from_value_error(exc, where, "filters") from None
    if data.get("assistant_id") is None:
        chosen = data["filters"].get("assistant_id") if isinstance(data["filters"], dict) else None
        data["assistant_id"] = chosen if isinstance(chosen, str) else principal.assistant(None)
    try:
        return RetrievalRequest.model_validate({**data, "user_id": user}, context={"max_text_chars": max_text_chars})
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc, where) from None


@router.post("/users/{user_id}/retrieve", summary="Retrieve the memory context for a query",
             openapi_extra=BODY_DOC, response_model=None,
             responses={**ok(RetrieveAnswer), **responses(422)})
async def retrieve(
    user_id: UserPath, request: Request, principal: Principal = Depends(require_principal)
) -> dict[str, Any]:
    """Short-term and pending turns, the mid-term pages ranked for the query (with their score and the
    searches that found them), the profile, user and assistant facts, and `prompt`: the context block of
    the generation prompt, stored text quoted as data."""
    body = parse_json(await request.body())
    return await run_in_threadpool(run_retrieval, request, principal, user_id, body)  # type: ignore[no-any-return]

"""POST /v1/users/{user_id}/retrieve: the memory context for a query, as JSON plus the rendered prompt.

Retrieval runs through the app's memory (memory.py: in-process `memoryos_workers.in_process.retrieve`, or
`producers.retrieve.retrieve` over RPC), and the whole `RetrievedContext` is returned: fields retrieval
gains later reach API clients without a change here (and the document, through answers.RetrieveAnswer).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from memoryos_workers.apps.http.answers import RetrieveAnswer, ok
from memoryos_workers.apps.http.auth import Principal, require_principal
from memoryos_workers.apps.http.errors import InvalidInput, responses
from memoryos_workers.apps.http.routes import ID_SCHEMA, V1_ERRORS, UserPath, body_doc, memory_of, parse_json, path_user
from schemas.query import FILTERS_JSON_SCHEMA, MAX_CONTEXT_TOKENS, MAX_TOP_K, MIN_CONTEXT_TOKENS
from schemas.tokens import estimate_tokens

router = APIRouter(prefix="/v1", tags=["retrieval"], responses=V1_ERRORS)


class RetrieveIn(BaseModel):
    # Strict: "5" or true is not a top_k, as the document says (it declares integers).
    model_config = ConfigDict(extra="forbid", strict=True,
                              json_schema_extra={"examples": [{"query": "What is my cat called?", "top_k": 5}]})

    query: str = Field(
        description="The user's new message, or what to look up: not blank, at most MEMORYOS_MAX_TEXT_CHARS "
        "characters, no NUL.", json_schema_extra={"minLength": 1, "pattern": r"\S"},
    )
    top_k: int | None = Field(
        None, description=f"Pages to return, 1-{MAX_TOP_K} (default MEMORYOS_RETRIEVAL_TOP_PAGES).",
        json_schema_extra={"minimum": 1, "maximum": MAX_TOP_K},
    )
    assistant_id: str | None = Field(None, description="Whose assistant facts to include (default: the deployment's).",
                                     json_schema_extra=ID_SCHEMA)
    max_tokens: int | None = Field(
        None, description="Token budget of the context (default MEMORYOS_CONTEXT_MAX_TOKENS; 0: no budget).",
        json_schema_extra={"anyOf": [{"type": "integer", "enum": [0]}, {"type": "null"}, {
            "type": "integer", "minimum": MIN_CONTEXT_TOKENS, "maximum": MAX_CONTEXT_TOKENS}]},
    )
    now: str | None = Field(None, description="The question's time, ISO 8601 (default: now), for 'yesterday' etc.")
    filters: dict[str, Any] | None = Field(
        None, description="since, until (ISO 8601), assistant_id, metadata (exact values) narrowing the search.",
        json_schema_extra={"anyOf": [FILTERS_JSON_SCHEMA, {"type": "null"}]},
    )


def prompt_tokens(prompt: str) -> int:
    """Measured as the context budget measures it (schemas/tokens.py), so it is in the unit of max_tokens."""
    return estimate_tokens(prompt)


def run_retrieval(request: Request, principal: Principal, user_id: str, body: RetrieveIn) -> dict[str, Any]:
    """Shared by the API and the inspector's query box: the context (ids as the tenant knows them), its
    prompt and the prompt's token count."""
    memory = memory_of(request)
    stored_user = path_user(principal, user_id)
    try:
        assistant_id = principal.assistant(body.assistant_id) if body.assistant_id is not None else None
    except ValueError as exc:
        raise InvalidInput.from_value_error(exc, "body", "assistant_id") from None
    try:
        filters = principal.filters(body.filters)
        # Whose assistant facts: the body's assistant, else the filter's (as in-process retrieval has it),
        # else the tenant's default; each scoped to the tenant.
        if assistant_id is None:
            chosen = filters.get("assistant_id") if isinstance(filters, dict) else None
            assistant_id = chosen if isinstance(chosen, str) else principal.assistant(None)
        context = memory.retrieve(stored_user, body.query, assistant_id=assistant_id, top_k=body.top_k,
                                  max_tokens=body.max_tokens, now=body.now, filters=filters)
    except ValueError as exc:  # the checks name the field: "query: ...", "filters.since: ..."
        field = str(exc).split(":", 1)[0].split(".", 1)[0]
        field = field if field in RetrieveIn.model_fields else "query"
        raise InvalidInput.from_value_error(exc, "body", field) from None
    prompt = context.to_prompt()
    answer = principal.outward(context.model_dump(mode="json"))
    answer["prompt"] = prompt
    answer["prompt_tokens"] = prompt_tokens(prompt)
    return answer  # type: ignore[no-any-return]


@router.post("/users/{user_id}/retrieve", summary="Retrieve the memory context for a query",
             openapi_extra=body_doc(RetrieveIn), response_model=None,
             responses={**ok(RetrieveAnswer), **responses(422)})
async def retrieve(
    user_id: UserPath, request: Request, principal: Principal = Depends(require_principal)
) -> dict[str, Any]:
    """Short-term and pending turns, the mid-term pages ranked for the query (with their score and the
    searches that found them), the profile, user and assistant facts, and `prompt`: the context block of
    the generation prompt, stored text quoted as data."""
    body = parse_json(await request.body(), RetrieveIn)
    return await run_in_threadpool(run_retrieval, request, principal, user_id, body)  # type: ignore[no-any-return]

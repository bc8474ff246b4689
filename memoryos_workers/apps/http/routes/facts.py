"""A user's facts, corrected by people: list (with history), add, correct or pin, delete. Every answer
names the fact's `fact_id`; every change is recorded on the fact with the key's tenant that made it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from memoryos_workers.apps.http.answers import ok
from memoryos_workers.apps.http.auth import Principal, require_principal
from memoryos_workers.apps.http.errors import InvalidInput, responses
from memoryos_workers.apps.http.routes import V1_ERRORS, UserPath, body_doc, known_user, memory_of, parse_json
from producers.errors import FactsBusy
from schemas.persona import KnowledgeEntry

router = APIRouter(prefix="/v1", tags=["facts"], responses=V1_ERRORS)
FACT_ID_PATTERN = r"^f[0-9a-f]{10}$"
FactPath = Annotated[str, Path(description="The fact's id, as the fact lists name it.", examples=["f0123456789"],
                               json_schema_extra={"pattern": FACT_ID_PATTERN})]


class FactIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    text: str = Field(description="The fact, one self-contained sentence (e.g. 'Lea lives in Berlin.').",
                      json_schema_extra={"minLength": 1, "pattern": r"\S"})
    pinned: bool = Field(False, description="Pinned facts are never superseded or retired by the LLM.")


class FactPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    text: str | None = Field(None, description="New text: replaces the fact, which is kept as history.",
                             json_schema_extra={"anyOf": [{"type": "string", "minLength": 1, "pattern": r"\S"},
                                                          {"type": "null"}]})
    pinned: bool | None = Field(None, description="Pin or unpin the fact.")


class FactList(BaseModel):
    user_id: str
    facts: list[KnowledgeEntry] = Field(description="Oldest first; with history=true, replaced ones too.")


class FactAnswer(BaseModel):
    user_id: str
    fact_id: str = Field(description="The fact now current (after a correction: the new one), or deleted.")
    fact: KnowledgeEntry


def _by(principal: Principal) -> str:
    return f"api-key:{principal.tenant}"


def _edit(request: Request, principal: Principal, user_id: str, call: Any) -> dict[str, Any]:
    """Runs one edit; a fact of no such id (of this user: another tenant's or user's is never found) is a
    404, bad input a 422 naming the field, an extraction writing the user's memory for longer than the edit
    waits a 503 with Retry-After (nothing was changed)."""
    stored = known_user(request, principal, user_id)
    try:
        entry = call(memory_of(request), stored)
    except FactsBusy as exc:  # raised alike by a LocalMemory and (carried typed over RPC) a RemoteMemory
        raise HTTPException(503, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
    except ValueError as exc:
        if str(exc).startswith("fact_id: no fact"):
            raise HTTPException(404, str(exc)) from None
        raise InvalidInput.from_value_error(exc, "path" if str(exc).startswith("fact_id") else "body", "") from None
    return principal.outward({"user_id": stored, "fact_id": entry.fact_id,  # type: ignore[no-any-return]
                              "fact": entry.model_dump(mode="json")})


@router.get("/users/{user_id}/facts", summary="The user's facts (history=true: replaced ones too)",
            response_model=None, responses={**ok(FactList), **responses(404, 422)})
def list_facts(user_id: UserPath, request: Request, principal: Principal = Depends(require_principal),
               history: bool = Query(False, description="Also facts no longer true, with their windows.")
               ) -> dict[str, Any]:
    stored = known_user(request, principal, user_id)
    facts = memory_of(request).list_facts(stored, history=history)
    answer = {"user_id": stored, "facts": [e.model_dump(mode="json") for e in facts]}
    return principal.outward(answer)  # type: ignore[no-any-return]


@router.post("/users/{user_id}/facts", summary="Add a fact about the user (a person's)", response_model=None,
             openapi_extra=body_doc(FactIn), responses={**ok(FactAnswer), **responses(404, 422)})
async def add_fact(user_id: UserPath, request: Request, principal: Principal = Depends(require_principal),
                   ) -> dict[str, Any]:
    body = parse_json(await request.body(), FactIn)
    return await run_in_threadpool(_edit, request, principal, user_id, lambda m, u: m.add_fact(
        u, body.text, pinned=body.pinned, by=_by(principal)))


@router.patch("/users/{user_id}/facts/{fact_id}", summary="Correct a fact (it is kept as history) or pin it",
              response_model=None, openapi_extra=body_doc(FactPatch),
              responses={**ok(FactAnswer), **responses(404, 422)})
async def correct_fact(user_id: UserPath, fact_id: FactPath, request: Request,
                       principal: Principal = Depends(require_principal)) -> dict[str, Any]:
    body = parse_json(await request.body(), FactPatch)
    return await run_in_threadpool(_edit, request, principal, user_id, lambda m, u: m.correct_fact(
        u, fact_id, text=body.text, pinned=body.pinned, by=_by(principal)))


@router.delete("/users/{user_id}/facts/{fact_id}", summary="Delete a fact", response_model=None,
               responses={**ok(FactAnswer), **responses(404, 422)})
def delete_fact(user_id: UserPath, fact_id: FactPath, request: Request,
                principal: Principal = Depends(require_principal)) -> dict[str, Any]:
    return _edit(request, principal, user_id, lambda m, u: m.delete_fact(u, fact_id, by=_by(principal)))

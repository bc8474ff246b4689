"""What each JSON route answers, as models for the OpenAPI document only.

The routes build plain JSON (ids mapped to the tenant's by `Principal.outward`) and return it as it is:
these models are declared with `responses={200: {"model": ...}}`, never used to re-validate an answer on
the hot path. tests/apps/http/test_openapi_conformance.py checks every answer against them, so the
document and what is sent cannot drift apart. Where an answer is a dump of a shared model
(RetrievedContext, UserProfile, KnowledgeEntry, Page) that model is named here, so a field added there
reaches the document too.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from producers.context import RetrievedContext
from schemas.persona import KnowledgeEntry, UserProfile
from schemas.turns import Page

# RetrievedContext's fields (not its methods: one of them is called prompt_tokens) plus the rendered prompt.
RetrieveAnswer = create_model(
    "RetrieveAnswer",
    __doc__="The memory context for a query (RetrievedContext) and its rendered prompt.",
    **{name: (field.annotation, field) for name, field in RetrievedContext.model_fields.items()},  # type: ignore[call-overload]
    prompt=(str, Field(description="The context block of the generation prompt, stored text quoted as data.")),
    prompt_tokens=(int, Field(description="The prompt's size in the unit of max_tokens (characters / 4).")),
)


class UsersPage(BaseModel):
    users: list[str] = Field(description="User ids in order, as the key's tenant names them.")
    next: str | None = Field(description="Pass as `after` for the next page; null on the last page.")


class UserView(BaseModel):
    """What each tier holds (the same view as `memoryos inspect`)."""

    user_id: str
    short_term: list[Page]
    pending_turns: int = Field(description="Turns out of short-term memory waiting for promotion.")
    pending: list[Page] = Field(description="The first of those turns.")
    dead_batches: int
    pages: int = Field(description="Mid-term pages stored.")
    recent_pages: list[dict[str, Any]] = Field(description="The newest mid-term pages, newest first.")
    segments: list[dict[str, Any]] = Field(description="Mid-term segments with their heat, hottest first.")
    profile: str | None = Field(description="The profile as the prompt renders it.")
    profile_detail: UserProfile | None
    facts: dict[str, list[KnowledgeEntry]] = Field(description="The newest user and assistant facts.")


class Persona(BaseModel):
    user_id: str
    profile: UserProfile | None
    user_knowledge: list[KnowledgeEntry]
    assistant_knowledge: list[KnowledgeEntry]


class Forgotten(BaseModel):
    user_id: str
    removed: dict[str, int] = Field(description="What was deleted, by tier; all 0 when nothing was stored.")


class DeadLetter(BaseModel):
    user_id: str
    kind: Literal["batch", "persona"]
    id: str
    attempts: int | None
    error: str | None
    turns: int


class DeadLetters(BaseModel):
    dead_letters: list[DeadLetter]


class Replayed(BaseModel):
    replayed: dict[str, dict[str, int]] = Field(description="Per user: batches and persona pages put back in line.")


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str] = Field(description="redis, vector_store: ok, or why not.")
    reads: Literal["in-process", "rpc"]
    workers: Literal["in-process", "external"]
    store: Literal["qdrant-server", "embedded"]


def ok(model: Any, description: str = "Successful Response") -> dict[int | str, dict[str, Any]]:
    """The `responses` entry of a route's 200 answer, declared by model (or a type such as dict[str, float])."""
    return {200: {"model": model, "description": description}}

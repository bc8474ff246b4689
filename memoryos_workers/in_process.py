"""In-process reads for the process that owns the vector store (a worker, the embedded setup):
retrieval and the long-term persona through the process's runtime. Everyone else reads over RPC
(producers.retrieve, producers.persona), answered by the worker tasks that call these."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from memoryos_workers.runtime import Runtime, get_runtime
from schemas.context import RetrievedContext
from schemas.persona import KnowledgeEntry, UserProfile


def retrieve(
    user_id: str,
    query: str,
    *,
    assistant_id: str | None = None,
    top_k: int | None = None,
    runtime: Runtime | None = None,
    now: datetime | str | None = None,
    filters: Mapping[str, Any] | None = None,
    max_tokens: int | None = None,
) -> RetrievedContext:
    """The same arguments as producers.retrieve (see Retriever.retrieve): top_k defaults to
    MEMORYOS_RETRIEVAL_TOP_PAGES, max_tokens to MEMORYOS_CONTEXT_MAX_TOKENS, now to the current time."""
    return (runtime or get_runtime()).retriever.retrieve(
        user_id, query, assistant_id=assistant_id, top_k=top_k, now=now, filters=filters, max_tokens=max_tokens
    )


def get_user_profile(user_id: str, runtime: Runtime | None = None) -> UserProfile | None:
    return (runtime or get_runtime()).persona.get_profile(user_id)


def get_user_knowledge(user_id: str, runtime: Runtime | None = None) -> list[KnowledgeEntry]:
    return (runtime or get_runtime()).persona.list("user", user_id)


def get_assistant_knowledge(
    assistant_id: str, user_id: str | None = None, runtime: Runtime | None = None
) -> list[KnowledgeEntry]:
    """With a user: the facts scoped to (assistant, user) plus shared ones; without: shared ones only."""
    rt = runtime or get_runtime()
    if user_id is None:
        return rt.persona.shared_assistant_facts(assistant_id)
    return rt.persona.list("assistant", user_id, assistant_id)


def read_persona(kind: str, user_id: str | None, assistant_id: str | None, runtime: Runtime | None = None) -> Any:
    """The JSON answer of the read_persona task."""
    if kind == "profile":
        profile = get_user_profile(str(user_id), runtime)
        return profile.model_dump(mode="json") if profile else None
    if kind == "user":
        return [e.model_dump(mode="json") for e in get_user_knowledge(str(user_id), runtime)]
    if kind == "assistant":
        return [e.model_dump(mode="json") for e in get_assistant_knowledge(str(assistant_id), user_id, runtime)]
    raise ValueError(f"kind: must be profile, user or assistant, not {kind!r}")

"""In-process reads for the process that owns the vector store (a worker, the embedded setup), as plain
functions: retrieval and the long-term persona through the process's runtime (a `LocalMemory` over it).
Everyone else reads over RPC (producers.retrieve, producers.persona), answered by the same class."""

from __future__ import annotations

from typing import Any

from memoryos_workers.interface.local import LocalMemory
from memoryos_workers.runtime import Runtime, get_runtime
from producers.context import RetrievedContext
from schemas.persona import KnowledgeEntry, UserProfile


def _memory(runtime: Runtime | None) -> LocalMemory:
    return LocalMemory(runtime or get_runtime())


def retrieve(user_id: str, query: str, *, runtime: Runtime | None = None, **options: Any) -> RetrievedContext:
    """`options`: the fields of schemas.query.RetrievalRequest (top_k, max_tokens, now, filters, assistant_id,
    ...), as producers.retrieve takes them; ValueError naming the first bad one."""
    return _memory(runtime).retrieve_for(user_id, query, **options)


def get_user_profile(user_id: str, runtime: Runtime | None = None) -> UserProfile | None:
    return _memory(runtime).profile(user_id)


def get_user_knowledge(user_id: str, runtime: Runtime | None = None) -> list[KnowledgeEntry]:
    return _memory(runtime).facts("user", user_id)


def get_assistant_knowledge(
    assistant_id: str, user_id: str | None = None, runtime: Runtime | None = None
) -> list[KnowledgeEntry]:
    """With a user: the facts scoped to (assistant, user) plus shared ones; without: shared ones only."""
    return _memory(runtime).facts("assistant", user_id, assistant_id)

"""Read access to the long-term persona, in the process that owns the store (and behind the
`memoryos.read_persona` task for everyone else: see producers.persona)."""

from __future__ import annotations

from typing import Any

from memoryos_workers.memory.persona_store import SHARED
from memoryos_workers.runtime import Runtime, get_runtime
from schemas.persona import KnowledgeEntry, UserProfile


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
        rt.persona.ensure()
        from memoryos_workers.memory.persona_store import KNOWLEDGE, _entry

        hits = rt.store.scroll(KNOWLEDGE, filter={"kind": "assistant", "owner": f"assistant:{assistant_id}:{SHARED}"},
                               order_by="created_ms")
        return [_entry(h) for h in hits]
    return rt.persona.list("assistant", user_id, assistant_id)


def read(kind: str, user_id: str | None, assistant_id: str | None, runtime: Runtime | None = None) -> Any:
    """The JSON answer of the read_persona task."""
    if kind == "profile":
        profile = get_user_profile(str(user_id), runtime)
        return profile.model_dump(mode="json") if profile else None
    if kind == "user":
        return [e.model_dump(mode="json") for e in get_user_knowledge(str(user_id), runtime)]
    if kind == "assistant":
        return [e.model_dump(mode="json") for e in get_assistant_knowledge(str(assistant_id), user_id, runtime)]
    raise ValueError(f"kind: must be profile, user or assistant, not {kind!r}")

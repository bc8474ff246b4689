"""`Memoryos`: the MemoryOS PyPI API as a drop-in, over the one memory interface (memoryos_workers.interface).

By default it runs embedded (the vector store under data_storage_path and an in-process Celery
worker), like MemoryOS itself; with MEMORYOS_EXTERNAL_WORKERS the deployment's workers do the work; beside
a running worker that holds the embedded store it reads through that worker over RPC (`open_memory`
decides). Unlike MemoryOS, add_memory returns at once: the summarising and persona work happens in the
background (force_mid_term_analysis waits for it).

A process holds one memory per store, whatever number of users it serves: `Memoryos.from_settings()`
opens the deployment's memory, `for_user()` gives the same memory about another user, and `shutdown()`
stops the worker and closes the store when a server ends.
"""

from __future__ import annotations

import copy
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from memoryos_workers.apps.generation import generate_response
from memoryos_workers.interface import Memory, close_shared, shared_memory
from producers.context import RetrievedContext
from schemas.knobs import UserKnobs
from schemas.persona import KnowledgeEntry, UserProfile
from schemas.settings import Settings, get_settings
from schemas.turns import check_id

log = logging.getLogger("memoryos.facade")

_EMBEDDING_ALIASES = {"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}


class Memoryos:
    def __init__(
        self,
        user_id: str,
        openai_api_key: str | None = None,
        data_storage_path: str | os.PathLike[str] | None = None,
        openai_base_url: str | None = None,
        assistant_id: str = "default_assistant_profile",
        short_term_capacity: int = 10,
        mid_term_capacity: int = 2000,
        long_term_knowledge_capacity: int = 100,
        retrieval_queue_capacity: int = 7,
        mid_term_heat_threshold: float = 5.0,
        mid_term_similarity_threshold: float = 0.6,
        llm_model: str = "gpt-4o-mini",
        embedding_model_name: str | None = None,
        **_ignored: Any,
    ) -> None:
        check_id("user_id", user_id)  # before anything opens: a bad id changes nothing
        check_id("assistant_id", assistant_id)
        base = get_settings()
        overrides: dict[str, Any] = {
            "user_id": user_id,
            "assistant_id": assistant_id,
            "short_term_capacity": short_term_capacity,
            "mid_term_capacity": mid_term_capacity,
            "long_term_knowledge_capacity": long_term_knowledge_capacity,
            "retrieval_queue_capacity": retrieval_queue_capacity,
            "mid_term_heat_threshold": mid_term_heat_threshold,
            "mid_term_similarity_threshold": mid_term_similarity_threshold,
            "llm_model": llm_model,
        }
        if openai_api_key:
            overrides["openai_api_key"] = openai_api_key
        if openai_base_url:  # MemoryOS examples pass "" for "the default endpoint"
            overrides["openai_base_url"] = openai_base_url
        if data_storage_path:
            overrides["data_dir"] = Path(data_storage_path) / "vectors"
        if embedding_model_name:
            wanted = _EMBEDDING_ALIASES.get(embedding_model_name, embedding_model_name)
            pinned = base.embedding_model if "embedding_model" in base.model_fields_set else None
            if pinned and pinned != wanted:
                # The deployment's setting wins, said out loud: vectors of two models never mix.
                log.warning("embedding_model_name=%r ignored: MEMORYOS_EMBEDDING_MODEL=%r is set", wanted, pinned)
            else:
                overrides["embedding_model"] = wanted
        # Validated as a whole: a bad knob raises pydantic's ValidationError naming it.
        self.settings = Settings.model_validate({**base.model_dump(), **overrides})
        self.user_id = user_id
        self.assistant_id = assistant_id
        self.memory: Memory = shared_memory(self.settings)
        # This object's capacities and thresholds are its user's, wherever the work runs (DESIGN:
        # per-user settings in Redis, honoured by the publish script and by workers).
        self.memory.set_knobs(user_id, UserKnobs.from_settings(self.settings))

    @classmethod
    def from_settings(cls) -> Memoryos:
        """The deployment's memory: its user, assistant, capacities and model come from the MEMORYOS_*
        settings rather than from MemoryOS's class defaults (what a server such as MCP wants)."""
        s = get_settings()
        return cls(
            user_id=s.user_id,
            assistant_id=s.assistant_id,
            short_term_capacity=s.short_term_capacity,
            mid_term_capacity=s.mid_term_capacity,
            long_term_knowledge_capacity=s.long_term_knowledge_capacity,
            retrieval_queue_capacity=s.retrieval_queue_capacity,
            mid_term_heat_threshold=s.mid_term_heat_threshold,
            mid_term_similarity_threshold=s.mid_term_similarity_threshold,
            llm_model=s.llm_model,
        )

    def for_user(self, user_id: str, assistant_id: str | None = None) -> Memoryos:
        """This memory about another user: the same store, settings and in-process worker. The view writes no
        per-user knobs (that user's stored knobs, or else the deployment's settings, apply)."""
        check_id("user_id", user_id)
        check_id("assistant_id", assistant_id, required=False)
        if user_id == self.user_id and assistant_id in (None, self.assistant_id):
            return self
        view = copy.copy(self)
        view.user_id = user_id
        view.assistant_id = assistant_id or self.assistant_id
        return view

    @property
    def runs_worker(self) -> bool:
        """Whether the background work runs inside this process (the embedded setup) or on the deployment's workers."""
        return self.memory.runs_worker

    # -- the MemoryOS API ------------------------------------------------------------------------
    def add_memory(
        self,
        user_input: str,
        agent_response: str,
        timestamp: str | datetime | None = None,
        meta_data: dict[str, Any] | None = None,
    ) -> str:
        turn = {
            "user_id": self.user_id,
            "assistant_id": self.assistant_id,
            "user_input": user_input,
            "agent_response": agent_response,
            "timestamp": timestamp,
            "metadata": meta_data,
        }
        return self.memory.publish([turn])[0]

    def retrieve(self, query: str, top_k: int | None = None, **options: Any) -> RetrievedContext:
        """The memory context for `query`: at most `top_k` pages (default retrieval_queue_capacity, as
        MemoryOS), within `max_tokens` (default MEMORYOS_CONTEXT_MAX_TOKENS), the most useful per token.
        `options`: the other fields of schemas.query.RetrievalRequest (max_tokens, now, filters, ...)."""
        options.setdefault("assistant_id", self.assistant_id)
        return self.memory.retrieve_for(self.user_id, query, top_k=top_k or self.settings.retrieval_queue_capacity,
                                        **options)

    def get_response(
        self,
        query: str,
        relationship_with_user: str = "friend",
        style_hint: str = "",
        user_conversation_meta_data: dict[str, Any] | None = None,
    ) -> str:
        """Retrieve, generate, then record the new turn (as MemoryOS does)."""
        context = self.retrieve(query)
        answer, _ = generate_response(query, context, relationship_with_user, style_hint, llm=self.memory.runtime.llm)
        self.add_memory(query, answer, meta_data=user_conversation_meta_data)
        return answer

    def profile(self) -> UserProfile | None:
        """The user's profile as built so far; None before the first persona extraction."""
        return self.memory.profile(self.user_id)

    def knowledge(self, kind: Literal["user", "assistant"]) -> list[KnowledgeEntry]:
        """Facts about the user, or the assistant's facts drawn from this user's dialogue, oldest first."""
        return self.memory.facts(kind, self.user_id, self.assistant_id)

    def get_user_profile_summary(self) -> str:
        profile = self.profile()
        return profile.render() if profile else "None"

    def get_assistant_knowledge_summary(self) -> list[dict[str, Any]]:
        entries = self.knowledge("assistant")
        return [
            {"knowledge": e.text, "timestamp": e.date or datetime.fromtimestamp(e.created_at).isoformat()}
            for e in entries
        ]

    def force_mid_term_analysis(self, timeout: float = 300.0) -> dict[str, int]:
        """Promote everything pending, then analyse every segment's unanalysed pages now."""
        return self.memory.analyse(self.user_id, timeout=timeout)

    def get_memory_stats(self) -> dict[str, Any]:
        view = self.memory.inspect(self.user_id)
        return {
            "user_id": self.user_id,
            "assistant_id": self.assistant_id,
            "short_term_memory": {
                "current_size": len(view["short_term"]),
                "capacity": self.settings.short_term_capacity,
            },
            "pending_turns": view["pending_turns"],
            "mid_term_memory": {
                "pages": view["pages"],
                "segments": len(view["segments"]),
                "capacity": self.settings.mid_term_capacity,
            },
            "long_term_memory": {
                "user_knowledge": len(self.knowledge("user")),
                "assistant_knowledge": len(self.knowledge("assistant")),
                "has_profile": view["profile_detail"] is not None,
            },
        }

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Nothing to release per object: the process's memory (its worker and store) is shared by every
        Memoryos object and ends with `shutdown()` or the process."""

    def __enter__(self) -> Memoryos:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def shutdown() -> None:
    """Stop the process's in-process worker, then close the shared stores, so the embedded store is flushed
    and let go (the next opener finds it clean). For a server that ends on purpose; at exit it happens
    anyway. A `Memoryos` used afterwards opens afresh."""
    close_shared()

"""`Memoryos`: the MemoryOS PyPI API as a drop-in, backed by the worker pipeline.

By default it runs embedded (the vector store under data_storage_path and an in-process Celery
worker), like MemoryOS itself; with MEMORYOS_QDRANT_URL set and MEMORYOS_EXTERNAL_WORKERS=1 it
leaves the work to the deployment's workers. Unlike MemoryOS, add_memory returns at once: the
summarising and persona work happens in the background (force_mid_term_analysis waits for it).

A process holds one runtime per store and one in-process worker, whatever number of users it serves:
`Memoryos.from_settings()` opens the deployment's memory, `for_user()` gives the same memory about
another user, and `shutdown()` stops the worker and closes the store when a server ends.
"""

from __future__ import annotations

import atexit
import copy
import logging
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from memoryos_workers.apps.generation import generate_response
from memoryos_workers.runtime import Runtime, set_runtime
from producers.pending import PendingWork
from producers.wire.knobs import set_user_knobs
from schemas.context import RetrievedContext
from schemas.knobs import UserKnobs
from schemas.persona import KnowledgeEntry, UserProfile
from schemas.settings import Settings, get_settings
from schemas.turns import check_id

log = logging.getLogger("memoryos.facade")

_EMBEDDING_ALIASES = {"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}
_active: dict[str, Any] = {}
_active_lock = threading.Lock()


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
            pinned = os.environ.get("MEMORYOS_EMBEDDING_MODEL")
            if pinned and pinned != wanted:
                # The deployment's setting wins, said out loud: vectors of two models never mix.
                log.warning("embedding_model_name=%r ignored: MEMORYOS_EMBEDDING_MODEL=%r is set", wanted, pinned)
            else:
                overrides["embedding_model"] = wanted
        # Validated as a whole: a bad knob raises pydantic's ValidationError naming it.
        self.settings = Settings.model_validate({**base.model_dump(), **overrides})
        self.user_id = user_id
        self.assistant_id = assistant_id
        self.runtime = _shared_runtime(self.settings)
        self.runtime.warm_up()  # a model or store problem shows here, not on the first call
        # This object's capacities and thresholds are its user's, wherever the work runs (DESIGN:
        # per-user settings in Redis, honoured by the publish script and by workers).
        set_user_knobs(self.runtime.redis, self.runtime.keys.user(user_id), UserKnobs.from_settings(self.settings))
        self._worker = None
        self._view = False
        self._previous_runtime = set_runtime(self.runtime)
        if not (self.settings.qdrant_url and os.environ.get("MEMORYOS_EXTERNAL_WORKERS") == "1"):
            self._worker = _shared_worker(self.runtime)

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
        """This memory about another user: the same runtime, store, settings and in-process worker. A
        second `Memoryos` would try to open a second runtime, and the embedded store has one opener. The
        view writes no per-user knobs (that user's stored knobs, or else the deployment's settings, apply)
        and its close() does nothing: the worker stays this object's to release."""
        check_id("user_id", user_id)
        check_id("assistant_id", assistant_id, required=False)
        if user_id == self.user_id and assistant_id in (None, self.assistant_id):
            return self
        view = copy.copy(self)
        view.user_id = user_id
        view.assistant_id = assistant_id or self.assistant_id
        view._worker = None
        view._view = True
        return view

    @property
    def runs_worker(self) -> bool:
        """Whether the background work runs inside this process (the embedded setup) or on the deployment's workers."""
        return self._worker is not None

    # -- the MemoryOS API ------------------------------------------------------------------------
    def add_memory(
        self,
        user_input: str,
        agent_response: str,
        timestamp: str | datetime | None = None,
        meta_data: dict[str, Any] | None = None,
    ) -> str:
        return self.runtime.publisher.publish(
            {
                "user_id": self.user_id,
                "assistant_id": self.assistant_id,
                "user_input": user_input,
                "agent_response": agent_response,
                "timestamp": timestamp,
                "metadata": meta_data,
            }
        )

    def retrieve(self, query: str, top_k: int | None = None, *, max_tokens: int | None = None,
                 now: datetime | str | None = None, filters: dict[str, Any] | None = None) -> RetrievedContext:
        """The memory context for `query`: at most `top_k` pages (default retrieval_queue_capacity, as
        MemoryOS), within `max_tokens` (default MEMORYOS_CONTEXT_MAX_TOKENS), the most useful per token."""
        return self.runtime.retriever.retrieve(
            self.user_id, query, assistant_id=self.assistant_id, top_k=top_k or self.settings.retrieval_queue_capacity,
            max_tokens=max_tokens, now=now, filters=filters,
        )

    def get_response(
        self,
        query: str,
        relationship_with_user: str = "friend",
        style_hint: str = "",
        user_conversation_meta_data: dict[str, Any] | None = None,
    ) -> str:
        """Retrieve, generate, then record the new turn (as MemoryOS does)."""
        context = self.retrieve(query)
        answer, _ = generate_response(query, context, relationship_with_user, style_hint, llm=self.runtime.llm)
        self.add_memory(query, answer, meta_data=user_conversation_meta_data)
        return answer

    def profile(self) -> UserProfile | None:
        """The user's profile as built so far; None before the first persona extraction."""
        return self.runtime.persona.get_profile(self.user_id)

    def knowledge(self, kind: Literal["user", "assistant"]) -> list[KnowledgeEntry]:
        """Facts about the user, or the assistant's facts drawn from this user's dialogue, oldest first."""
        if kind == "user":
            return self.runtime.persona.list("user", self.user_id)
        return self.runtime.persona.list("assistant", self.user_id, self.assistant_id)

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

        PendingWork(self.runtime.publisher).wait_idle(self.user_id, timeout=timeout, flush=True)
        return self.runtime.persona_worker.extract(self.user_id, force=True)

    def get_memory_stats(self) -> dict[str, Any]:
        from producers.wire import state

        rt, keys = self.runtime, self.runtime.keys.user(self.user_id)
        return {
            "user_id": self.user_id,
            "assistant_id": self.assistant_id,
            "short_term_memory": {
                "current_size": rt.redis.llen(keys.stm),
                "capacity": self.settings.short_term_capacity,
            },
            "pending_turns": rt.redis.llen(keys.buf) + sum(len(b.pages) for b in state.batches(rt.redis, keys)),
            "mid_term_memory": {
                "pages": rt.pages.count(self.user_id),
                "segments": rt.segment_stats.count(keys),
                "capacity": self.settings.mid_term_capacity,
            },
            "long_term_memory": {
                "user_knowledge": len(self.knowledge("user")),
                "assistant_knowledge": len(self.knowledge("assistant")),
                "has_profile": self.profile() is not None,
            },
        }

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        if self._view:
            return
        if self._worker is not None:
            _release_worker()
            self._worker = None
        set_runtime(self._previous_runtime)

    def __enter__(self) -> Memoryos:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shared_runtime(settings: Settings) -> Runtime:
    """One runtime per store in a process: the embedded store can be opened once. Objects for other
    users on the same store share it; each keeps its own capacities and thresholds (per-user knobs)."""
    key = (str(settings.data_dir), settings.qdrant_url, settings.key_prefix, settings.embedding_model)
    with _active_lock:
        runtimes = _active.setdefault("runtimes", {})
        if key not in runtimes:
            runtimes[key] = Runtime(settings)
        return runtimes[key]


def _shared_worker(runtime: Runtime) -> Any:
    """One in-process worker per process: several Memoryos objects (one per user) share it."""
    from memoryos_workers.worker.embedded import EmbeddedWorker

    with _active_lock:
        if "worker" not in _active:
            _active["worker"] = EmbeddedWorker(runtime).start()
            _active["users"] = 0
            atexit.register(_stop_all)
        _active["users"] += 1
        return _active["worker"]


def _release_worker() -> None:
    with _active_lock:
        _active["users"] = max(0, _active.get("users", 1) - 1)


def _stop_all() -> None:
    with _active_lock:
        worker = _active.pop("worker", None)
    if worker is not None:
        worker.stop(timeout=10)


def shutdown() -> None:
    """Stop the process's in-process worker, then close the shared runtimes, so the embedded store is
    flushed and let go (the next opener finds it clean). For a server that ends on purpose; at exit the
    worker is stopped anyway. A `Memoryos` used afterwards opens a fresh runtime."""
    _stop_all()
    with _active_lock:
        runtimes = _active.pop("runtimes", {})
    for runtime in runtimes.values():
        runtime.close()

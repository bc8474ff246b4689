"""`Memory`: what every app (the HTTP API, the CLI, the MCP server, the drop-in `Memoryos` class) asks of the
memory, whichever process owns the vector store.

Two implementations answer it: `LocalMemory` (interface/local.py) in the process that owns the store,
over the runtime; `RemoteMemory` (interface/remote.py) anywhere else, over the producers and the
retrieval lane. `open_memory` (interface/factory.py) chooses between them, once, from Settings. Both
give equal answers (tests/interface/test_congruence.py runs the same cases through both).

What both do the same way lives here: publishing (the publish script in Redis), the user index,
waiting for a user to go idle, the deployment's counters. Reads of the store and operators' commands
are each implementation's own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Literal

from memoryos_workers.runtime import Runtime
from producers.context import RetrievedContext
from producers.pending import PendingWork
from producers.wire.knobs import set_user_knobs
from producers.wire.state import users
from schemas.knobs import UserKnobs
from schemas.persona import KnowledgeEntry, Persona, UserProfile
from schemas.query import RetrievalRequest
from schemas.settings import Settings
from schemas.turns import Turn, check_id

FactKind = Literal["user", "assistant"]
Mode = Literal["local", "remote"]

# Operators' commands, by the name both sides use (memoryos_workers/ops/commands.py runs them).
EXPORT, FORGET, INSPECT, ANALYSE = "export", "forget", "inspect", "analyse"
DEAD_LIST, DEAD_REPLAY = "dead_list", "dead_replay"


class Memory(ABC):
    """Thread-safe. Every method raises ValueError naming the field on bad input, before anything changes."""

    mode: ClassVar[Mode]

    def __init__(self, runtime: Runtime) -> None:
        """`runtime`: the process's parts; a remote memory uses its Redis side only (and never opens the
        store), an app its LLM client (generation)."""
        self.runtime = runtime
        self.settings: Settings = runtime.settings
        self.publisher = runtime.publisher
        self._pending = PendingWork(self.publisher)

    # -- writes -------------------------------------------------------------------------------------
    def make_turn(self, data: Mapping[str, Any]) -> Turn:
        """A turn checked as publish_turn checks it (pydantic's ValidationError names the field)."""
        return self.publisher.make_turn(dict(data))

    def publish(self, turns: Sequence[Turn | Mapping[str, Any]]) -> list[str]:
        """Stores the turns in one round trip, every one checked first; their turn ids, in order."""
        checked = [t if isinstance(t, Turn) else self.make_turn(t) for t in turns]
        return self.publisher.store(checked)

    def set_knobs(self, user_id: str, knobs: UserKnobs) -> None:
        """A user's own capacities and thresholds, honoured over the settings by the publish script and
        every worker."""
        set_user_knobs(self.publisher.redis, self.publisher.keys.user(user_id), knobs)

    # -- reads ----------------------------------------------------------------------------------------
    @abstractmethod
    def retrieve(self, request: RetrievalRequest) -> RetrievedContext:
        """The memory context for one request (see schemas.query.RetrievalRequest)."""

    def retrieve_for(self, user_id: str, query: str, **options: Any) -> RetrievedContext:
        """`retrieve` with the request's fields as keyword arguments."""
        return self.retrieve(RetrievalRequest.of(user_id, query, max_text_chars=self.settings.max_text_chars,
                                                 **options))

    @abstractmethod
    def profile(self, user_id: str) -> UserProfile | None:
        """The user's profile as built so far; None before the first persona extraction."""

    @abstractmethod
    def facts(self, kind: FactKind, user_id: str | None, assistant_id: str | None = None) -> list[KnowledgeEntry]:
        """Facts about the user ("user"), or the assistant's facts drawn from this user's dialogue plus shared
        ones ("assistant"; without a user: the shared ones only). Oldest first."""

    def persona(self, user_id: str, assistant_id: str | None = None) -> Persona:
        return Persona(
            profile=self.profile(user_id),
            user_knowledge=self.facts("user", user_id),
            assistant_knowledge=self.facts("assistant", user_id, assistant_id or self.settings.assistant_id),
        )

    def users(self, prefix: str = "", after: str | None = None, limit: int = 100) -> list[str]:
        """Users who published, in id order, a page at a time."""
        return users(self.publisher.redis, self.publisher.keys.users, prefix=prefix, after=after, limit=limit)

    def stats(self) -> dict[str, Any]:
        """The deployment's counters and gauges (`memoryos stats`)."""
        from memoryos_workers.counters import deployment_stats

        return deployment_stats(self.publisher)

    # -- operators' commands ----------------------------------------------------------------------------
    @abstractmethod
    def _command(self, op: str, user_id: str | None, params: dict[str, Any] | None = None) -> Any:
        """Runs an operator's command where the store is; its answer as plain JSON values."""

    # -- people correcting memory (memoryos_workers/ops/fact_ops.py runs these where the store is) ---------
    def list_facts(self, user_id: str, history: bool = False) -> list[KnowledgeEntry]:
        """The user's current facts, oldest first; with history, replaced and retired ones too, each with
        the window it held, what replaced it and its recorded changes."""
        return [KnowledgeEntry.model_validate(v) for v in self._command(
            "facts_list", user_id, {"history": history})]

    def add_fact(self, user_id: str, text: str, *, pinned: bool = False, by: str) -> KnowledgeEntry:
        """A person's fact about the user (`by`: the key or person adding it). Pinned: the LLM cannot
        supersede or retire it."""
        return self._fact("fact_add", user_id, {"text": text, "pinned": pinned, "by": by})

    def correct_fact(self, user_id: str, fact_id: str, *, text: str | None = None, pinned: bool | None = None,
                     by: str) -> KnowledgeEntry:
        """New text replaces the fact (kept as history, marked corrected by `by`); `pinned` alone pins or
        unpins it. The answer is the fact now current."""
        return self._fact("fact_correct", user_id, {"fact_id": fact_id, "text": text, "pinned": pinned, "by": by})

    def pin_fact(self, user_id: str, fact_id: str, pinned: bool = True, *, by: str) -> KnowledgeEntry:
        return self.correct_fact(user_id, fact_id, pinned=pinned, by=by)

    def delete_fact(self, user_id: str, fact_id: str, *, by: str) -> KnowledgeEntry:
        """Removes the fact (only it: the fact it replaced stays in history); the answer is what was removed."""
        return self._fact("fact_delete", user_id, {"fact_id": fact_id, "by": by})

    def _fact(self, op: str, user_id: str, params: dict[str, Any]) -> KnowledgeEntry:
        check_id("user_id", user_id)
        return KnowledgeEntry.model_validate(self._command(op, user_id, params))

    def export(self, user_id: str) -> Iterator[dict[str, Any]]:
        """Every stored record of the user (`memoryos export`), as JSON values."""
        yield from self._command(EXPORT, user_id)

    def forget(self, user_id: str) -> dict[str, int]:
        """Deletes every tier of the user, also while work is in flight; what was removed, by tier."""
        return self._command(FORGET, user_id)  # type: ignore[no-any-return]

    def inspect(self, user_id: str) -> dict[str, Any]:
        """What each tier holds (`memoryos inspect`, the HTTP inspector)."""
        return self._command(INSPECT, user_id)  # type: ignore[no-any-return]

    def dead_letters(self, user_id: str | None = None) -> list[dict[str, Any]]:
        return self._command(DEAD_LIST, user_id)  # type: ignore[no-any-return]

    def replay(self, user_id: str | None = None) -> dict[str, dict[str, int]]:
        """Puts dead letters back in line: {user: {"batches": n, "persona_pages": m}}."""
        return self._command(DEAD_REPLAY, user_id)  # type: ignore[no-any-return]

    def wait_idle(self, user_id: str, timeout: float = 60.0, flush: bool = False) -> None:
        """Blocks until the user's work is done (with flush: the buffer promoted and waiting persona pages
        extracted too); TimeoutError otherwise."""
        self._pending.wait_idle(user_id, timeout=timeout, flush=flush)

    def analyse(self, user_id: str, timeout: float = 300.0) -> dict[str, int]:
        """Promotes everything pending, then extracts the persona from every segment's unread pages now
        (MemoryOS's force_mid_term_analysis); what changed."""
        self.wait_idle(user_id, timeout=timeout, flush=True)
        return self._command(ANALYSE, user_id)  # type: ignore[no-any-return]

    # -- health and lifecycle -----------------------------------------------------------------------------
    @abstractmethod
    def check_store(self) -> None:
        """Raises when the vector store does not answer (here, or through a worker over RPC)."""

    def readiness(self) -> dict[str, str]:
        """Redis answers, and the vector store does: "ok" or what is wrong, by part."""
        checks: dict[str, str] = {}
        try:
            self.publisher.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001 - a probe reports, it does not raise
            checks["redis"] = f"unavailable ({type(exc).__name__})"
        try:
            self.check_store()
            checks["vector_store"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["vector_store"] = f"unavailable ({type(exc).__name__})"
        return checks

    @property
    def runs_worker(self) -> bool:
        """Whether this process runs the background work (an in-process worker)."""
        return False

    def describe(self) -> dict[str, str]:
        return {
            "reads": "in-process" if self.mode == "local" else "rpc",
            "workers": "in-process" if self.runs_worker else "external",
            "store": "qdrant-server" if self.settings.qdrant_url else "embedded",
        }

    def close(self) -> None:  # noqa: B027 - most memories hold nothing to release
        """Stops what this memory started (an in-process worker) and lets go of the store."""

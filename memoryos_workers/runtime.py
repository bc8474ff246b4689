"""The composition root: every part a worker process needs, created once from settings and shared by
its threads. Classes receive their collaborators explicitly (nothing below reaches back into the
runtime), so a call can be followed and any part replaced, for instance by the stubs beside each
adapter. Only the hosts (worker tasks, ops, apps) hold a Runtime."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from producers.pending import PendingWork
from producers.publish import Publisher
from schemas.settings import Settings, get_settings

if TYPE_CHECKING:
    from memoryos_workers.embeddings.embedder import Embedder
    from memoryos_workers.llm.client import LLMClient
    from memoryos_workers.llm.token_budget import TokenBudget
    from memoryos_workers.memory.pages import PageStore
    from memoryos_workers.memory.persona_store import PersonaStore
    from memoryos_workers.memory.segment_stats import HeatRefresh, SegmentStats
    from memoryos_workers.memory.segments import SegmentStore
    from memoryos_workers.pipeline.mid_term import MidTerm
    from memoryos_workers.pipeline.persona_extraction import PersonaWorker
    from memoryos_workers.pipeline.promotion import Promoter
    from memoryos_workers.retrieval.retriever import Retriever
    from memoryos_workers.vectorstore import VectorStore

T = TypeVar("T")


class Runtime:
    """Heavy parts (the model, the store) open lazily: a beat process never loads them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.RLock()
        self._parts: dict[str, Any] = {}

    @property
    def publisher(self) -> Publisher:
        return self._once("publisher", lambda: Publisher(self.settings))

    @property
    def redis(self):  # noqa: ANN201 - redis.Redis
        return self.publisher.redis

    @property
    def keys(self):  # noqa: ANN201 - producers.Keys
        return self.publisher.keys

    @property
    def pending(self) -> PendingWork:
        return self._once("pending", lambda: PendingWork(self.publisher))

    def _once(self, name: str, factory: Callable[[], T]) -> T:
        """cached_property is not thread-safe: two threads would open the embedded store twice."""
        with self._lock:
            if name not in self._parts:
                self._parts[name] = factory()
            return self._parts[name]

    @property
    def embedder(self) -> Embedder:
        from memoryos_workers.embeddings.embedder import get_embedder

        return self._once("embedder", lambda: get_embedder(self.settings))

    @property
    def store(self) -> VectorStore:
        from memoryos_workers.vectorstore import open_store

        return self._once("store", lambda: open_store(self.settings))

    @property
    def pages(self) -> PageStore:
        from memoryos_workers.memory.pages import PageStore

        return self._once("pages", lambda: PageStore(self.store, self.embedder))

    @property
    def llm(self) -> LLMClient:
        from memoryos_workers.llm.client import LLMClient
        from memoryos_workers.llm.token_count import TokenCounter

        return self._once("llm", lambda: LLMClient(
            self.settings, budget=self._token_budget(),
            counter=TokenCounter(self.redis, self.keys.llm_calibration(self.settings.llm_model)),
        ))  # fmt: skip

    def _token_budget(self) -> TokenBudget | None:
        from memoryos_workers.llm.token_budget import TokenBudget

        tpm = self.settings.llm_tokens_per_minute
        if not tpm:
            return None
        return TokenBudget(
            self.redis, self.keys.llm_budget, tpm,
            max_wait=self.settings.llm_rate_limit_max_wait, stats_key=self.keys.stats,
        )  # fmt: skip

    @property
    def segments(self) -> SegmentStore:
        from memoryos_workers.memory.segments import SegmentStore

        return self._once("segments", lambda: SegmentStore(self.store, self.embedder, self.settings))

    @property
    def segment_stats(self) -> SegmentStats:
        from memoryos_workers.memory.heat import HeatParams
        from memoryos_workers.memory.segment_stats import SegmentStats

        return self._once("segment_stats", lambda: SegmentStats(self.redis, HeatParams.from_settings(self.settings)))

    @property
    def heat_refresh(self) -> HeatRefresh:
        from memoryos_workers.memory.segment_stats import HeatRefresh

        return self._once(
            "heat_refresh", lambda: HeatRefresh(self.redis, self.publisher.sender, self.settings.kick_stale_after)
        )

    @property
    def mid_term(self) -> MidTerm:
        from memoryos_workers.pipeline.mid_term import MidTerm

        return self._once("mid_term", lambda: MidTerm(
            self.settings, self.redis, self.keys, self.embedder, self.llm, self.pages, self.segments,
            self.segment_stats,
        ))

    @property
    def promoter(self) -> Promoter:
        from memoryos_workers.pipeline.promotion import Promoter

        return self._once("promoter", lambda: Promoter(
            self.settings, self.redis, self.keys, self.publisher.scripts, self.pending, self.pages, self.mid_term,
            self.heat_refresh,
        ))

    @property
    def persona_worker(self) -> PersonaWorker:
        from memoryos_workers.pipeline.persona_extraction import PersonaWorker

        return self._once("persona_worker", lambda: PersonaWorker(
            self.settings, self.redis, self.keys, self.publisher.sender, self.llm, self.pages, self.persona,
            self.segment_stats, self.heat_refresh,
        ))

    @property
    def retriever(self) -> Retriever:
        from memoryos_workers.retrieval.bookkeeping import Bookkeeping
        from memoryos_workers.retrieval.retriever import Retriever
        from producers.context import PackingParams

        return self._once("retriever", lambda: Retriever(
            self.settings, self.redis, self.keys, self.publisher.scripts, self.embedder, self.pages, self.segments,
            self.persona, Bookkeeping(self.redis, self.keys.stats, self.segment_stats, self.heat_refresh),
            packing=PackingParams(persona_share=self.settings.persona_share),
        ))

    @property
    def persona(self) -> PersonaStore:
        from memoryos_workers.memory.persona_store import PersonaStore

        return self._once("persona", lambda: PersonaStore(self.store, self.embedder, self.settings))

    def warm_up(self) -> None:
        """Load the model and open the store now, so the first task is not slow and a store held by
        another process is reported at start-up rather than on the first turn (Edge locks each
        collection's folder when it opens it, so all of them are opened here)."""
        for part in (self.pages, self.segments, self.persona):
            part.ensure()
        from memoryos_workers.retrieval import dates

        dates.warm_up()  # the date parser's language data: not on a user's first question

    def close(self) -> None:
        with self._lock:
            store = self._parts.pop("store", None)
        if store is not None:
            store.close()


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime(get_settings())
        return _runtime


def set_runtime(runtime: Runtime | None) -> Runtime | None:
    """Install a runtime (an embedded app, tests); returns the previous one."""
    global _runtime
    with _runtime_lock:
        previous, _runtime = _runtime, runtime
        return previous

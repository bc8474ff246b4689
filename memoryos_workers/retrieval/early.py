"""The part of a retrieval that needs no query vector, run on another thread while the query is embedded.

The embedding is most of a retrieval's time and the model's run releases the GIL, so reads that do not
need its vector cost nothing on the request's path when they run beside it: what Redis holds (short-term,
unpromoted turns, the user's time zone), the times the query names, the profile and the user's facts in
order, the query's BM25 vector and the BM25 search over the user's pages. Everything else waits for the vector.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import redis

from memoryos_workers.memory.pages import PageStore
from memoryos_workers.memory.persona_store import PersonaStore
from memoryos_workers.retrieval.dates import TimeWindow, time_windows
from memoryos_workers.retrieval.filters import check_range, localise, payload_filter
from memoryos_workers.retrieval.fusion import FusionParams
from memoryos_workers.retrieval.persona_read import Unembedded, read_unembedded, wants_history
from memoryos_workers.vectorstore import Hit
from producers.wire import state
from producers.wire.keys import UserKeys
from producers.wire.scripts import Scripts
from schemas.query import RetrievalRequest
from schemas.settings import Settings
from schemas.turns import Page


@dataclass(frozen=True)
class Sources:
    """Where the early reads read from (the retriever's adapters, all thread-safe)."""

    settings: Settings
    redis: redis.Redis
    scripts: Scripts
    persona: PersonaStore
    pages: PageStore
    sparse: Any  # the BM25 encoder
    fusion: FusionParams


@dataclass(frozen=True)
class Early:
    short_term: list[Page]  # every turn Redis holds for the user (not yet filtered)
    zone: tzinfo
    where: dict[str, Any]  # the request's filters as a payload filter, in the user's zone
    windows: list[TimeWindow]  # the times the query names ("yesterday"), read at its `now` in the user's zone
    persona: Unembedded
    sparse: Any  # the query's BM25 vector, or None when BM25 is off
    bm25: list[Hit] | None  # the BM25 list over the user's pages (ids and scores), when it is searched alone
    timings_ms: dict[str, float] = field(default_factory=dict)


def read_early(src: Sources, keys: UserKeys, request: RetrievalRequest, depth: int) -> Early:
    """What a retrieval reads before it has the query's vector; `depth` is how deep its searches look."""
    t0 = time.perf_counter()
    short_term, name = state.recent_and_zone(src.scripts, src.redis, keys)
    zone = user_zone(name, src.settings)
    check_range(request.filters, zone)
    where = payload_filter(request.filters, zone)
    when = localise(request.now, zone) if request.now is not None else datetime.now(zone)
    windows = time_windows(request.query, when) if src.fusion.use_dates else []
    t1 = time.perf_counter()
    persona = read_unembedded(src.persona, request.user_id, wants_history(request),
                              src.settings.retrieval_top_knowledge)
    t2 = time.perf_counter()
    f = src.fusion
    sparse = src.sparse.embed_query(request.query) if f.use_sparse else None
    bm25 = None
    src.pages.ensure()
    if sparse is not None and src.pages.hybrid and not (f.store_hybrid and f.use_dense):
        bm25 = src.pages.query(request.user_id, depth, sparse=sparse, where=where, with_payload=False)
    t3 = time.perf_counter()
    ms = {"short_term": t1 - t0, "persona_read": t2 - t1, "bm25": t3 - t2}
    return Early(short_term, zone, where, windows, persona, sparse, bm25,
                 {k: round(v * 1000, 3) for k, v in ms.items()})


def user_zone(name: str | None, settings: Settings) -> tzinfo:
    """The user's zone knob, else MEMORYOS_TIMEZONE; one that no longer names a zone (a tz database
    without it) falls back too."""
    if name:
        try:
            return ZoneInfo(name)
        except (ValueError, KeyError):
            pass
    return settings.tz

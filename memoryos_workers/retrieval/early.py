"""The part of a retrieval that needs no query vector, run on another thread while the query is embedded.

The embedding is most of a retrieval's time and the model's run releases the GIL, so reads that do not
need its vector cost nothing on the request's path when they run beside it: what Redis holds (short-term,
unpromoted turns, the user's time zone), the times the query names, the profile and the user's facts in
order, the query's BM25 vector, the BM25 search over the user's pages with their payloads, ranked with the
user's own IDF (retrieval/user_idf.py; most pages the dense search finds are among them, so the reads after
the embedding are ids and the few payloads missing),
and the recent turns scored by the query's words; the query's keywords, the turns the filters keep; and,
for a budgeted request, what the fitting will render of the turns, the BM25 pages and the profile
(retrieval/warm.py). Everything else waits for the vector.

A store read right after the embedding runs about twice as slow as the same read again (the model's run
leaves the CPU caches cold; measured on the latency benchmark's store), so each read moved here saves more
than its own time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import redis

from memoryos_workers.embeddings.sparse import page_document
from memoryos_workers.memory.pages import PageStore, page_point_id
from memoryos_workers.memory.persona_store import PersonaStore
from memoryos_workers.memory.similarity import extract_keywords
from memoryos_workers.retrieval.dates import TimeWindow, time_windows
from memoryos_workers.retrieval.filters import check_range, localise, matches, payload_filter
from memoryos_workers.retrieval.fusion import FusionParams
from memoryos_workers.retrieval.neighbours import Near, prefetch
from memoryos_workers.retrieval.persona_read import Unembedded, assistant_of, read_unembedded, wants_history
from memoryos_workers.retrieval.user_idf import user_bm25, user_weights
from memoryos_workers.retrieval.warm import warm
from memoryos_workers.vectorstore import Hit
from producers.wire import state
from producers.wire.keys import UserKeys
from producers.wire.scripts import Scripts
from schemas.query import RetrievalRequest
from schemas.settings import Settings
from schemas.turns import Page

SEGMENT_KEYWORDS = 20  # the query's keywords the segments' Fscore compares with theirs


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
    bm25: list[Hit] | None  # the BM25 list over the user's pages (with payloads), when it is searched alone
    # Every turn Redis holds that shares words with the query, best first (`by_words`), when the request
    # has a budget; the retriever keeps those its filters keep.
    recent: list[Hit] = field(default_factory=list)
    # The turns Redis holds that the request's filters keep, and their point ids (left out of the store's
    # lists: the recent dialogue holds them already).
    kept: list[Page] = field(default_factory=list)
    skip: set[str] = field(default_factory=set)
    keywords: list[str] = field(default_factory=list)  # the query's, for the segments' Fscore
    near: Near = field(default_factory=Near)  # neighbours of the first BM25 pages (retrieval/neighbours.py)
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
    kept = [p for p in short_term if matches(p, request.filters, zone)]
    skip = {page_point_id(request.user_id, p.turn_id) for p in kept}
    keywords = extract_keywords([request.query], limit=SEGMENT_KEYWORDS) if src.fusion.use_segments else []
    t1 = time.perf_counter()
    persona = read_unembedded(src.persona, request.user_id, wants_history(request),
                              src.settings.retrieval_top_knowledge, assistant_of(request, src.settings.assistant_id))
    t2 = time.perf_counter()
    f = src.fusion
    sparse = src.sparse.embed_query(request.query) if f.use_sparse else None
    bm25 = None
    src.pages.ensure()
    weights = None
    if sparse is not None and src.pages.hybrid and not (f.store_hybrid and f.use_dense):
        weights = user_weights(src.pages, request.user_id, sparse) if f.user_idf else None
        bm25 = user_bm25(src.pages, request.user_id, sparse, where, depth, weights)
    recent = (by_words(request.user_id, short_term, sparse, src.sparse, weights)
              if request.budget and sparse is not None else [])
    near = prefetch(src.pages, request.user_id, bm25, where) if bm25 and f.neighbour_weight > 0 else Near()
    t3 = time.perf_counter()
    if request.budget:
        warm(request.query, kept, bm25 or [], persona.profile)
    t4 = time.perf_counter()
    ms = {"short_term": t1 - t0, "persona_read": t2 - t1, "bm25": t3 - t2, "warm": t4 - t3}
    return Early(short_term, zone, where, windows, persona, sparse, bm25, recent, kept, skip, keywords, near,
                 {k: round(v * 1000, 3) for k, v in ms.items()})


def by_words(user_id: str, turns: Sequence[Page], query: Any, encoder: Any,
             idf_weights: dict[int, float] | None = None) -> list[Hit]:
    """Turns Redis holds that share words with the query, best first (BM25 term weights, times the user's
    IDF from their stored pages when given, else none): each as a hit shaped like a stored page (its point
    id, should it be stored). Each turn's score is its own, so keeping some of them afterwards keeps their
    order."""
    if not turns:
        return []
    weights = idf_weights or dict(zip(query.indices, query.values, strict=True))
    docs = encoder.embed_recent([page_document(p.user_input, p.agent_response) for p in turns])
    scored = []
    for page, doc in zip(turns, docs, strict=True):
        score = sum(v * weights.get(i, 0.0) for i, v in zip(doc.indices, doc.values, strict=True))
        if score > 0:
            payload = page.model_dump(mode="json")
            payload["ts"] = page.timestamp.timestamp()
            scored.append(Hit(id=page_point_id(user_id, page.turn_id), score=score, payload=payload))
    return sorted(scored, key=lambda h: -h.score)


def user_zone(name: str | None, settings: Settings) -> tzinfo:
    """The user's zone knob, else MEMORYOS_TIMEZONE; one that no longer names a zone (a tz database
    without it) falls back too."""
    if name:
        try:
            return ZoneInfo(name)
        except (ValueError, KeyError):
            pass
    return settings.tz

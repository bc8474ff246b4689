"""Synchronous retrieval (paper section 3.4), fast enough for every chat request: no LLM on this path.

One call returns:

* short-term: every page of the user's short-term list, then the pages that left it but are not yet
  promoted (the buffer, pending and dead-lettered batches), deduplicated by turn_id, in publish order;
* mid-term pages: the paper's two-stage search (top segments by Fscore = cos + Jaccard of keywords,
  then the best pages inside them) fused by weighted reciprocal rank fusion with direct searches over
  all of the user's pages (dense, BM25, and, when the query names a date, dense within that date), so
  a page whose segment missed the cut can still be found (retrieval/fusion.py, retrieval/dates.py);
* the user profile, and the top user and assistant facts by similarity.

The query is embedded once; Redis is read in one atomic round trip (producers.wire.state.recent); what
the answer used is recorded afterwards, off the request path (retrieval/bookkeeping.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import redis

from memoryos_workers.embeddings.base import TextEmbedder
from memoryos_workers.embeddings.sparse import get_sparse_encoder
from memoryos_workers.memory.pages import PageStore
from memoryos_workers.memory.persona_store import PersonaStore
from memoryos_workers.memory.segments import SegmentStore
from memoryos_workers.memory.similarity import extract_keywords, jaccard
from memoryos_workers.retrieval.bookkeeping import Bookkeeping
from memoryos_workers.retrieval.dates import DateMention, date_mentions
from memoryos_workers.retrieval.fusion import DEFAULT_FUSION, FusionParams, RankFusion
from memoryos_workers.vectorstore import Hit
from producers.wire import state
from producers.wire.keys import Keys, UserKeys
from producers.wire.scripts import Scripts
from schemas.context import RetrievedContext, RetrievedPage, check_retrieval_args
from schemas.settings import Settings
from schemas.turns import Page


class Retriever:
    """Safe to call from many threads at once: it holds only thread-safe adapters."""

    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        keys: Keys,
        scripts: Scripts,
        embedder: TextEmbedder,
        pages: PageStore,
        segments: SegmentStore,
        persona: PersonaStore,
        bookkeeping: Bookkeeping,
        fusion: FusionParams = DEFAULT_FUSION,
    ) -> None:
        self.settings = settings
        self.redis = client
        self.keys = keys
        self.scripts = scripts
        self.embedder = embedder
        self.pages_store = pages
        self.segments = segments
        self.persona = persona
        self.bookkeeping = bookkeeping
        self.fusion = fusion
        self.sparse = get_sparse_encoder()

    def with_fusion(self, **changes: Any) -> Retriever:
        """The same retriever with other fusion parameters (the benchmark's variants)."""
        return replace_fusion(self, replace(self.fusion, **changes))

    def retrieve(
        self, user_id: str, query: str, *, assistant_id: str | None = None, top_k: int | None = None
    ) -> RetrievedContext:
        top_k = self.settings.retrieval_top_pages if top_k is None else top_k
        check_retrieval_args(user_id, query, assistant_id, top_k, max_text_chars=self.settings.max_text_chars)
        timings: dict[str, float] = {}
        started = clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[name] = round((now - clock) * 1000, 3)
            clock = now

        keys = self.keys.user(user_id)
        short_term = self._short_term(keys)
        lap("short_term")
        vector = self.embedder.embed_query(query)
        sparse = self.sparse.embed_query(query) if self.fusion.use_sparse else None
        lap("embed")
        segments = self._top_segments(user_id, query, vector) if self.fusion.use_segments else []
        lap("segments")
        pages = self._pages(user_id, query, vector, sparse, segments, short_term, top_k)
        lap("pages")
        profile, user_facts, assistant_facts = self._persona(user_id, assistant_id, vector)
        lap("persona")
        self.bookkeeping.visits(user_id, keys, list(dict.fromkeys(p.segment_id for p in pages if p.segment_id)))
        lap("visits")
        timings["total"] = round((time.perf_counter() - started) * 1000, 3)
        self.bookkeeping.timed(timings["total"])
        return RetrievedContext(
            user_id=user_id,
            assistant_id=assistant_id,
            query=query,
            short_term=short_term,
            pages=pages,
            user_profile=profile,
            user_knowledge=user_facts,
            assistant_knowledge=assistant_facts,
            timings_ms=timings,
        )

    # -- short-term and not-yet-promoted pages ---------------------------------------------------------
    def _short_term(self, keys: UserKeys) -> list[Page]:
        return state.recent(self.scripts, self.redis, keys)

    # -- mid-term -----------------------------------------------------------------------------------------
    def _top_segments(self, user_id: str, query: str, vector: Sequence[float]) -> list[tuple[Hit, float]]:
        """The paper's first stage: segments by Fscore = cos(e_seg, e_query) + Jaccard(K_seg, K_query)."""
        m = self.settings.retrieval_top_segments
        hits = self.segments.search(user_id, vector, m * self.fusion.segment_candidates)
        keywords = extract_keywords([query], limit=20)
        scored = [(hit, hit.score + jaccard(hit.payload.get("keywords") or [], keywords)) for hit in hits]
        scored.sort(key=lambda pair: -pair[1])
        return scored[:m]

    def _pages(
        self,
        user_id: str,
        query: str,
        vector: Sequence[float],
        sparse: Any,
        segments: list[tuple[Hit, float]],
        short_term: list[Page],
        top_k: int,
    ) -> list[RetrievedPage]:
        f = self.fusion
        pages = self.pages_store
        pages.ensure()
        depth = max(f.depth, 2 * top_k)
        skip = {p.turn_id for p in short_term}
        fusion = RankFusion(f.rrf_k)
        if segments:
            in_segments = {"segment_id": [hit.id for hit, _ in segments]}
            fusion.add("segment", pages.query(user_id, depth, vector=vector, where=in_segments), f.segment_weight, skip)
        sparse = sparse if pages.hybrid else None
        if f.store_hybrid and f.use_dense and sparse is not None:
            fusion.add("hybrid", pages.query(user_id, depth, vector=vector, sparse=sparse), f.dense_weight, skip)
        else:
            if f.use_dense:
                fusion.add("dense", pages.query(user_id, depth, vector=vector), f.dense_weight, skip)
            if sparse is not None:
                fusion.add("bm25", pages.query(user_id, depth, sparse=sparse), f.sparse_weight, skip)
        if f.use_dates:
            self._date_lists(fusion, user_id, query, vector, depth, skip)
        ranked = fusion.top(top_k)
        summaries = self._segment_summaries([fusion.hits[t] for t, _ in ranked], segments)
        return [_page(fusion.hits[t], score, summaries, fusion.found_by[t]) for t, score in ranked]

    def _date_lists(
        self, fusion: RankFusion, user_id: str, query: str, vector: Sequence[float], depth: int, skip: set[str]
    ) -> None:
        """A date in the query adds a dense search within that date; a month without a year favours the
        pages already found that fall in that month."""
        mentions = date_mentions(query)
        if not mentions:
            return
        tz = self.settings.tz
        weight = self.fusion.date_weight
        for mention in mentions:
            window = mention.window(tz)
            if window is not None:
                within = {"ts": {"gte": window[0], "lt": window[1]}}
                fusion.add("date", self.pages_store.query(user_id, depth, vector=vector, where=within), weight, skip)
                continue
            found = [fusion.hits[turn_id] for turn_id, _ in fusion.top(len(fusion.scores))]
            fusion.add("date", [hit for hit in found if _in_mention(hit, mention, tz)], weight, skip)

    def _segment_summaries(self, hits: list[Hit], segments: list[tuple[Hit, float]]) -> dict[str, Hit]:
        known = {hit.id: hit for hit, _ in segments}
        missing = list({h.payload["segment_id"] for h in hits if h.payload.get("segment_id")} - set(known))
        if missing:
            known.update({hit.id: hit for hit in self.segments.get(missing)})
        return known

    # -- long-term persona -----------------------------------------------------------------------------
    def _persona(self, user_id: str, assistant_id: str | None, vector: Sequence[float]) -> tuple[Any, list, list]:
        persona = self.persona
        limit = self.settings.retrieval_top_knowledge
        assistant = assistant_id or self.settings.assistant_id
        profile = persona.get_profile(user_id)
        user_facts = persona.search("user", user_id, None, vector, limit)
        assistant_facts = persona.search("assistant", user_id, assistant, vector, limit)
        return profile, user_facts, assistant_facts


def replace_fusion(retriever: Retriever, fusion: FusionParams) -> Retriever:
    r = retriever
    return Retriever(r.settings, r.redis, r.keys, r.scripts, r.embedder, r.pages_store, r.segments, r.persona,
                     r.bookkeeping, fusion)


def _in_mention(hit: Hit, mention: DateMention, tz: Any) -> bool:
    ts = hit.payload.get("ts")
    if not isinstance(ts, (int, float)):
        return False
    return mention.matches(datetime.fromtimestamp(ts, tz))


def _page(hit: Hit, score: float, segments: dict[str, Hit], found_by: list[str]) -> RetrievedPage:
    p = hit.payload
    segment = segments.get(p.get("segment_id") or "")
    return RetrievedPage(
        turn_id=p["turn_id"],
        user_input=p.get("user_input", ""),
        agent_response=p.get("agent_response", ""),
        timestamp=p["timestamp"],
        metadata=p.get("metadata") or {},
        score=round(score, 6),
        segment_id=p.get("segment_id"),
        segment_summary=segment.payload.get("summary", "") if segment is not None else "",
        chain_summary=p.get("chain_summary") or "",
        seq=int(p.get("seq", 0)),
        theme=p.get("theme") or "",
        found_by=found_by,
    )

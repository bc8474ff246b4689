"""Synchronous retrieval (paper section 3.4), fast enough for every chat request: no LLM on this path.

One call returns:

* short-term: every page of the user's short-term list, then the pages that left it but are not yet
  promoted (the buffer, pending and dead-lettered batches), deduplicated by turn_id, in publish order;
* mid-term pages: the paper's two-stage search (top segments by Fscore = cos + Jaccard of keywords,
  then the best pages inside them) fused by weighted reciprocal rank fusion with direct searches over
  all of the user's pages (dense, BM25, and, when the query names a time, dense within that time), so
  a page whose segment missed the cut can still be found (retrieval/fusion.py, retrieval/dates.py);
* the user profile, and the top user and assistant facts by similarity;

then cut to the token budget by value per token (producers/context/fit.py): the context holds what its prompt
holds. Times in the query ("yesterday", "last Tuesday") are read at `now` in the user's time zone;
`filters` (a time range, the assistant, exact metadata values) go to the store's payload filter and are
applied to the turns Redis holds too (retrieval/filters.py).

The query is embedded once; what needs no vector (Redis, read in one atomic round trip by
producers.wire.state; the profile and the most recently confirmed facts; the query's BM25 search and the
neighbours of its first pages; the time phrases and keywords; the text the fitting will render) is read on a
second thread while it is embedded (retrieval/early.py); what the answer used is recorded afterwards, off the
request path (retrieval/bookkeeping.py).
"""

from __future__ import annotations

import contextvars
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import redis

from memoryos_workers.embeddings.base import TextEmbedder
from memoryos_workers.embeddings.sparse import get_sparse_encoder
from memoryos_workers.memory.pages import PageStore
from memoryos_workers.memory.persona_store import PersonaStore
from memoryos_workers.memory.segments import SegmentStore
from memoryos_workers.memory.similarity import jaccard
from memoryos_workers.retrieval.bookkeeping import Bookkeeping
from memoryos_workers.retrieval.early import Early, Sources, read_early
from memoryos_workers.retrieval.filters import within
from memoryos_workers.retrieval.fusion import DEFAULT_FUSION, FusionParams, RankFusion
from memoryos_workers.retrieval.neighbours import around
from memoryos_workers.retrieval.neighbours import by_seq as read_seqs
from memoryos_workers.retrieval.persona_read import assistant_of, persona_for
from memoryos_workers.vectorstore import Hit
from memoryos_workers.vectorstore.base import plain_hit
from producers.context import DEFAULT_PACKING, PackingParams, RetrievedContext
from producers.context.fit import fit
from producers.context.parts import PageCandidate, Parts
from producers.tracing import traced
from producers.wire.keys import Keys
from producers.wire.scripts import Scripts
from schemas.query import MAX_TOP_K, RetrievalRequest
from schemas.settings import Settings
from schemas.words import STEMS_VERSION

EARLY_THREADS = 8


def _span_ids(request: RetrievalRequest) -> dict[str, Any]:
    """What a retrieval's span names (ids and options; never the query)."""
    return {"memoryos.user_id": request.user_id, **{f"memoryos.{k}": getattr(request, k)
                                                     for k in ("assistant_id", "top_k", "max_tokens")}}


def _span_counts(context: RetrievedContext) -> dict[str, Any]:
    """What a retrieval's span records of its answer: counts and the time each stage took."""
    counts = {"short_term": context.short_term, "pages": context.pages, "user_facts": context.user_knowledge,
              "assistant_facts": context.assistant_knowledge}
    return {**{f"memoryos.{k}": len(v) for k, v in counts.items()},
            **{f"memoryos.ms.{stage}": ms for stage, ms in (context.timings_ms or {}).items()}}


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
        packing: PackingParams = DEFAULT_PACKING,
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
        self.packing = packing
        self.sparse = get_sparse_encoder()
        self._sources = Sources(settings, client, scripts, persona, pages, self.sparse, fusion)
        # Threads for the reads that run beside the query's embedding (one per retrieval in flight; more
        # retrievals at once than this wait for one, as they would for a core).
        self._early = ThreadPoolExecutor(max_workers=EARLY_THREADS, thread_name_prefix="retrieval-early")

    def with_fusion(self, **changes: Any) -> Retriever:
        """The same retriever with other fusion parameters (the benchmark's variants)."""
        return replace_params(self, replace(self.fusion, **changes), self.packing)

    def with_packing(self, **changes: Any) -> Retriever:
        """The same retriever with other packing parameters (the benchmark's variants)."""
        return replace_params(self, self.fusion, replace(self.packing, **changes))

    def retrieve_for(self, user_id: str, query: str, **options: Any) -> RetrievedContext:
        """`retrieve` with the request's fields as keyword arguments (benchmarks, tests)."""
        return self.retrieve(RetrievalRequest.of(user_id, query, max_text_chars=self.settings.max_text_chars,
                                                 **options))

    @traced("memoryos.retrieve", lambda self, request: _span_ids(request), _span_counts)
    def retrieve(self, request: RetrievalRequest) -> RetrievedContext:
        """See RetrievalRequest: top_k caps the mid-term pages (default MEMORYOS_RETRIEVAL_TOP_PAGES, else as
        many as the budget holds); max_tokens is the prompt's budget (default MEMORYOS_CONTEXT_MAX_TOKENS,
        0 = none); now is when the question is asked (default: the current time). Its deadline is the
        caller's (the retrieval lane's); here nothing waits in a queue."""
        s = self.settings
        request = request.resolved(s)
        user_id, query = request.user_id, request.query
        budget = request.budget
        limit = _page_limit(request.top_k, budget, self.fusion.candidate_tokens)
        timings: dict[str, float] = {}
        started = clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            t = time.perf_counter()
            timings[name] = round((t - clock) * 1000, 3)
            clock = t

        keys = self.keys.user(user_id)
        # What needs no vector (Redis, the persona's reads, BM25) runs beside the query's embedding
        # (retrieval/early.py), in this request's context, so its spans stay children of the retrieval's.
        early_job = self._early.submit(contextvars.copy_context().run, read_early, self._sources, keys, request,
                                       max(self.fusion.depth, limit))
        vector = self.embedder.embed_query(query)
        lap("embed")
        early = early_job.result()
        timings.update(early.timings_ms)
        lap("early_wait")
        zone = early.zone
        short_term = early.kept  # the turns Redis holds that the filters keep
        segments, read = self._top_segments(user_id, early.keywords, vector) if self.fusion.use_segments else ([], {})
        lap("segments")
        pages = self._pages(user_id, vector, early, segments, read, limit, bool(budget))
        lap("pages")
        profile, user_facts, assistant_facts = persona_for(
            self.persona, early.persona, request, vector, self.settings.retrieval_top_knowledge,
            assistant_of(request, self.settings.assistant_id), zone)
        lap("persona")
        parts = Parts(query, short_term, pages, profile, user_facts, assistant_facts)
        # The pages are candidates until the fitting keeps some (producers/context/parts.py): only those
        # become models.
        parts = (fit(parts, budget, self.packing, max_pages=limit) if budget
                 else replace(parts, pages=[page.page() for page in pages]))
        context = RetrievedContext(user_id=user_id, assistant_id=request.assistant_id, query=query,
                                   max_tokens=budget, **parts.fields())
        lap("fit")
        self.bookkeeping.visits(user_id, keys, list(dict.fromkeys(p.segment_id for p in context.pages
                                                                  if p.segment_id)))
        lap("visits")
        timings["total"] = round((time.perf_counter() - started) * 1000, 3)
        self.bookkeeping.timed(timings["total"])
        return context.model_copy(update={"timings_ms": timings})

    # -- mid-term -----------------------------------------------------------------------------------------
    def _top_segments(self, user_id: str, keywords: list[str], vector: Sequence[float],
                      ) -> tuple[list[tuple[Hit, float]], dict[str, Hit]]:
        """The paper's first stage: segments by Fscore = cos(e_seg, e_query) + Jaccard(K_seg, K_query), the
        query's keywords taken beside the embedding (retrieval/early.py); with every segment the search read
        by id (their summaries serve the pages found, so most need no read of their own)."""
        m = self.settings.retrieval_top_segments
        hits = self.segments.search(user_id, vector, m * self.fusion.segment_candidates)
        scored = [(hit, hit.score + jaccard(hit.payload.get("keywords") or [], keywords)) for hit in hits]
        scored.sort(key=lambda pair: -pair[1])
        return scored[:m], {hit.id: hit for hit in hits}

    def _pages(
        self,
        user_id: str,
        vector: Sequence[float],
        early: Early,
        segments: list[tuple[Hit, float]],
        read: dict[str, Hit],
        limit: int,
        budgeted: bool,
    ) -> list[PageCandidate]:
        f = self.fusion
        pages = self.pages_store
        pages.ensure()
        where = early.where
        depth = max(f.depth, limit)
        skip = early.skip  # the recent dialogue's turns, by point id
        fusion = RankFusion(f.rrf_k)

        def search(**query: Any) -> list[Hit]:
            """Point ids and scores only: reading payloads is most of a search's cost, so only the pages
            that make the cut are read (`_read`)."""
            return pages.query(user_id, depth, with_payload=False, **query)

        if segments:
            in_segments = {**where, "segment_id": [hit.id for hit, _ in segments]}
            fusion.add("segment", search(vector=vector, where=in_segments), f.segment_weight, skip)
        sparse = early.sparse if pages.hybrid else None
        if f.store_hybrid and f.use_dense and sparse is not None:
            fusion.add("hybrid", search(vector=vector, sparse=sparse, where=where), f.dense_weight, skip)
        else:
            if f.use_dense:
                # Ids only when the BM25 list read its payloads beside the embedding (most pages kept are in
                # it); else with payloads, so the read after fusion is small.
                dense = pages.query(user_id, depth, vector=vector, where=where,
                                    with_payload=sparse is None or early.bm25 is None)
                fusion.add("dense", dense, f.dense_weight, skip)
            if sparse is not None:
                bm25 = early.bm25 if early.bm25 is not None else search(sparse=sparse, where=where)
                fusion.add("bm25", bm25, f.sparse_weight, skip)
        for window in early.windows:  # "yesterday", "in May 2023": a dense search within that time
            fusion.add("date", search(vector=vector, where=within(where, window.payload_range())), f.date_weight, skip)
        if f.neighbour_weight > 0:
            self._read(fusion, fusion.cut(limit))  # the likely pages in one read, the strongest among them
            self._neighbours(fusion, user_id, early, skip)
        if budgeted and sparse is not None:
            # The budget keeps only the newest of the turns Redis holds as recent dialogue; the older ones
            # (not in the store yet) compete with the pages by their words, so none drops out of view.
            kept = {p.turn_id for p in early.kept}
            recent = [h for h in early.recent if h.payload["turn_id"] in kept]  # scored beside the embedding
            fusion.add("recent", recent, f.sparse_weight, set())
            limit += len(recent)  # those the recent dialogue holds are left out of the pages when fitting
        ranked = self._top(fusion, limit)
        summaries = self._segment_summaries([hit for hit, _ in ranked], read)
        return [_candidate(hit, score, summaries, fusion.found_by[hit.id]) for hit, score in ranked]

    def _top(self, fusion: RankFusion, n: int) -> list[tuple[Hit, float]]:
        """The n best fused pages with their payloads, best first, ties broken by turn id."""
        candidates = fusion.cut(n)
        hits = self._read(fusion, candidates)
        ranked = sorted((t for t in candidates if t in hits),
                        key=lambda t: (-fusion.scores[t], hits[t].payload.get("turn_id", "")))
        return [(hits[t], fusion.scores[t]) for t in ranked[:n]]

    def _read(self, fusion: RankFusion, ids: list[str]) -> dict[str, Hit]:
        """These fused pages with their payloads, in one read for those found without it (a page deleted
        since its search is left out)."""
        missing = [t for t in ids if not fusion.hits[t].payload]
        if missing:
            for hit in self.pages_store.by_ids(missing):
                fusion.hits[hit.id] = plain_hit(hit.id, fusion.hits[hit.id].score, hit.payload)
        return {t: fusion.hits[t] for t in ids if fusion.hits[t].payload}

    def _neighbours(self, fusion: RankFusion, user_id: str, early: Early, skip: set[str]) -> None:
        """Multi-hop: the pages right before and after the strongest hits in their segment (the turn that
        asked, the turn that answered), as one more ranked list; those the early thread read are not read
        again (retrieval/neighbours.py)."""
        f = self.fusion
        strong = [hit for hit, _ in self._top(fusion, f.neighbour_hits)]
        wanted = around(strong)
        if not wanted:
            return
        by_seq = read_seqs(self.pages_store, user_id, wanted, early.where, early.near).found
        ordered = []
        for hit in strong:
            for seq in (hit.payload.get("seq", 0) - 1, hit.payload.get("seq", 0) + 1):
                other = by_seq.get(seq)
                if other is not None and other.payload.get("segment_id") == hit.payload.get("segment_id"):
                    ordered.append(other)
        fusion.add("neighbour", ordered, f.neighbour_weight, skip, scored=False)

    def _segment_summaries(self, hits: list[Hit], read: dict[str, Hit]) -> dict[str, Hit]:
        """The segments of these pages by id: those the segment search read, the others in one read."""
        known = dict(read)
        missing = list({h.payload["segment_id"] for h in hits if h.payload.get("segment_id")} - set(known))
        if missing:
            known.update({hit.id: hit for hit in self.segments.get(missing)})
        return known


def replace_params(retriever: Retriever, fusion: FusionParams, packing: PackingParams) -> Retriever:
    r = retriever
    return Retriever(r.settings, r.redis, r.keys, r.scripts, r.embedder, r.pages_store, r.segments, r.persona,
                     r.bookkeeping, fusion, packing)


def _page_limit(top_k: int | None, budget: int, candidate_tokens: int) -> int:
    """How many pages to fuse and hand to the packing: top_k when given; else enough for the budget to
    choose from (LoCoMo pages render to about 45 tokens)."""
    if top_k is not None:
        return top_k
    if not budget:
        return 10  # the paper's k
    return max(10, min(MAX_TOP_K, math.ceil(budget / candidate_tokens)))


def _candidate(hit: Hit, score: float, segments: dict[str, Hit], found_by: list[str]) -> PageCandidate:
    """A page for the fitting to weigh, with the stems stored with its text and its summaries (the summaries'
    are checked against their text only if the fitting asks for them); it becomes a model only if kept."""
    get = hit.payload.get
    segment_id = get("segment_id")
    segment = segments.get(segment_id or "")
    stems = get("stems") if get("stems_version") == STEMS_VERSION else None
    if segment is not None:
        summary, segment_stems = segment.payload.get("summary", ""), segment.payload.get("summary_stems")
    else:
        summary, segment_stems = "", None
    # Positional, in the fields' order (turn_id .. chain_stems): keywords cost a good part of building one.
    return PageCandidate(
        hit.payload["turn_id"], get("user_input", ""), get("agent_response", ""),
        PageCandidate.parse_time(hit.payload["timestamp"]), get("metadata") or {}, round(score, 6), segment_id,
        summary, get("chain_summary") or "", int(get("seq", 0)), get("theme") or "", found_by,
        stems if isinstance(stems, str) else None, segment_stems, get("chain_stems"),
    )

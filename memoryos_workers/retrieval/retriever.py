"""Synchronous retrieval (paper section 3.4), fast enough for every chat request: no LLM on this path.

One call returns:

* short-term: every page of the user's short-term list, then the pages that left it but are not yet
  promoted (the buffer, pending and dead-lettered batches), deduplicated by turn_id, in publish order;
* mid-term pages: the paper's two-stage search (top segments by Fscore = cos + Jaccard of keywords,
  then the best pages inside them) fused by weighted reciprocal rank fusion with direct searches over
  all of the user's pages (dense, BM25, and, when the query names a date, dense within that date), so
  a page whose segment missed the cut can still be found;
* the user profile, and the top user and assistant facts by similarity.

The query is embedded once; Redis is read in one atomic round trip (a small Lua script); visits to the
returned pages' segments are recorded with one pipelined round trip, and a refresh_heat is sent (from a
background thread) only when none is on its way for the user: retrieval never waits for it.
"""

from __future__ import annotations

import calendar
import json
import logging
import math
import re
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from memoryos_workers.counters import count
from memoryos_workers.embeddings.sparse import get_sparse_encoder
from memoryos_workers.memory.pages import PAGES
from memoryos_workers.memory.segments import SEGMENTS
from memoryos_workers.pipeline.persona_extraction import heat_kick_ttl_ms
from memoryos_workers.pipeline.segmentation import extract_keywords, jaccard
from memoryos_workers.runtime import Runtime, get_runtime
from memoryos_workers.vectorstore import Hit
from producers.wire.contract import REFRESH_HEAT_TASK
from producers.wire.keys import UserKeys
from producers.wire.state import parse_pages
from schemas.context import RetrievedContext, RetrievedPage, check_retrieval_args
from schemas.turns import Page

log = logging.getLogger("memoryos.retrieval")

# Short-term, buffer, and the pages of pending and dead-lettered batches, in one atomic read. Every key
# carries the user's hash tag (batch keys are built from the prefix, as the producers' scripts do).
SNAPSHOT_LUA = """
local stm = redis.call('LRANGE', KEYS[1], 0, -1)
local buf = redis.call('LRANGE', KEYS[2], 0, -1)
local batch_pages = {}
for i = 3, 4 do
  for _, id in ipairs(redis.call('LRANGE', KEYS[i], 0, -1)) do
    local pages = redis.call('HGET', KEYS[5] .. id, 'pages')
    if pages then
      batch_pages[#batch_pages + 1] = pages
    end
  end
end
return {stm, buf, batch_pages}
"""


@dataclass(frozen=True)
class FusionParams:
    """How the ranked lists are fused: weighted RRF, score(page) = sum of weight / (rrf_k + rank).

    Tuned on LoCoMo conv-26 and conv-30 (bench/retrieval.py): a small rrf_k (Qdrant's own default is 2)
    lets the top hits of each list lead, which beat the textbook k=60 by about 0.1 of recall@10; BM25
    weighs a little more than dense because questions name people, places and things. Not settings: they
    describe the algorithm, not a deployment.
    """

    rrf_k: float = 2.0
    segment_weight: float = 0.5  # pages inside the top segments (the paper's two-stage search)
    dense_weight: float = 1.0  # dense search over all the user's pages
    sparse_weight: float = 1.5  # BM25 over all the user's pages
    date_weight: float = 1.0  # dense search within a date the query names
    segment_candidates: int = 3  # segments read per top segment kept, to rerank them by Fscore
    depth: int = 20  # how deep each list looks (at least 2 * top_k)
    use_segments: bool = True
    use_dense: bool = True
    use_sparse: bool = True
    use_dates: bool = True
    store_hybrid: bool = False  # one dense+BM25 query fused inside the store (its RRF) instead of two lists


DEFAULT_FUSION = FusionParams()


# --- dates in the question ---------------------------------------------------------------------------

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS.update({"sept": 9})
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name and name.lower() != "may"})
_MONTH = r"(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_YEAR = r"(?P<year>(?:19|20)\d\d)"
_DAY = r"(?P<day>[0-3]?\d)(?:st|nd|rd|th)?"
_DATE_PATTERNS = [
    re.compile(r"\b(?P<year>(?:19|20)\d\d)-(?P<month>[01]?\d)-(?P<day>[0-3]?\d)\b"),
    re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR}\b", re.IGNORECASE),
    re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+{_YEAR}\b", re.IGNORECASE),
    re.compile(rf"\b{_MONTH},?\s+(?:of\s+)?{_YEAR}\b", re.IGNORECASE),
    re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}\b", re.IGNORECASE),
    re.compile(rf"\b{_MONTH}\s+{_DAY}\b(?!\s*(?:,?\s*(?:19|20)\d\d|:))", re.IGNORECASE),
    re.compile(rf"\b(?:in|during|of|since|until|last|this|early|late|mid)\s+{_MONTH}\b", re.IGNORECASE),
    re.compile(rf"\b{_YEAR}\b"),
]


@dataclass(frozen=True)
class DateMention:
    year: int | None
    month: int | None
    day: int | None

    def window(self, tz: Any) -> tuple[float, float] | None:
        """[start, end) in epoch seconds when the mention pins a span; None for a month of any year."""
        if self.year is None:
            return None
        if self.month is None:
            start, end = datetime(self.year, 1, 1, tzinfo=tz), datetime(self.year + 1, 1, 1, tzinfo=tz)
        elif self.day is None:
            start = datetime(self.year, self.month, 1, tzinfo=tz)
            end = datetime(self.year + (self.month == 12), self.month % 12 + 1, 1, tzinfo=tz)
        else:
            start = datetime(self.year, self.month, self.day, tzinfo=tz)
            end = start + timedelta(days=1)
        return start.timestamp(), end.timestamp()

    def matches(self, ts: datetime) -> bool:
        return (
            (self.year is None or ts.year == self.year)
            and (self.month is None or ts.month == self.month)
            and (self.day is None or ts.day == self.day)
        )


def date_mentions(query: str, limit: int = 3) -> list[DateMention]:
    """Years, months and days the query names, most specific first; "May" only next to a number or after
    "in" (it is also a verb)."""
    found: list[DateMention] = []
    taken: list[tuple[int, int]] = []
    for pattern in _DATE_PATTERNS:
        for m in pattern.finditer(query):
            if any(m.start() < end and start < m.end() for start, end in taken):
                continue
            mention = _mention(m.groupdict())
            if mention is not None:
                taken.append((m.start(), m.end()))
                if mention not in found:
                    found.append(mention)
    return found[:limit]


def _mention(groups: dict[str, str | None]) -> DateMention | None:
    year = int(groups["year"]) if groups.get("year") else None
    month_text = groups.get("month")
    month = None
    if month_text:
        month = int(month_text) if month_text.isdigit() else _MONTHS.get(month_text.lower().rstrip("."))
        if month is None or not 1 <= month <= 12:
            return None
    day = int(groups["day"]) if groups.get("day") else None
    if day is not None and (month is None or not 1 <= day <= calendar.monthrange(year or 2000, month)[1]):
        return None
    if day is not None and year is None:
        return DateMention(None, month, day)
    return DateMention(year, month, day)


# --- fusion ------------------------------------------------------------------------------------------


class _Fusion:
    """Weighted reciprocal rank fusion: score(d) = sum over lists of w / (k + rank)."""

    def __init__(self, k: float) -> None:
        self.k = k
        self.scores: dict[str, float] = {}
        self.hits: dict[str, Hit] = {}
        self.found_by: dict[str, list[str]] = {}

    def add(self, name: str, hits: Iterable[Hit], weight: float, skip: set[str]) -> None:
        if weight <= 0:
            return
        rank = 0
        for hit in hits:
            turn_id = hit.payload.get("turn_id")
            if not turn_id or turn_id in skip:
                continue
            rank += 1
            self.scores[turn_id] = self.scores.get(turn_id, 0.0) + weight / (self.k + rank)
            self.hits.setdefault(turn_id, hit)
            self.found_by.setdefault(turn_id, []).append(name)

    def top(self, n: int) -> list[tuple[str, float]]:
        return sorted(self.scores.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


# --- the retriever -----------------------------------------------------------------------------------


class Retriever:
    """Shares the runtime's adapters; safe to call from many threads at once."""

    def __init__(self, runtime: Runtime | None = None, fusion: FusionParams = DEFAULT_FUSION) -> None:
        self.rt = runtime or get_runtime()
        self.settings = self.rt.settings
        self.fusion = fusion
        self.sparse = get_sparse_encoder()
        self._snapshot = self.rt.redis.register_script(SNAPSHOT_LUA)

    def with_fusion(self, **changes: Any) -> Retriever:
        return Retriever(self.rt, replace(self.fusion, **changes))

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

        keys = self.rt.keys.user(user_id)
        short_term = self._short_term(keys)
        lap("short_term")
        vector = self.rt.embedder.embed_query(query)
        sparse = self.sparse.embed_query(query) if self.fusion.use_sparse else None
        lap("embed")
        segments = self._top_segments(user_id, query, vector) if self.fusion.use_segments else []
        lap("segments")
        pages = self._pages(user_id, query, vector, sparse, segments, short_term, top_k)
        lap("pages")
        profile, user_facts, assistant_facts = self._persona(user_id, assistant_id, vector)
        lap("persona")
        self._record_visits(user_id, keys, pages)
        lap("visits")
        timings["total"] = round((time.perf_counter() - started) * 1000, 3)
        _background().submit(self._count, timings["total"])
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
        """One atomic read: a batch finishing meanwhile cannot make its pages vanish from the view."""
        stm, buf, batch_pages = self._snapshot(
            keys=[keys.stm, keys.buf, keys.batches, keys.dead, keys.batch_prefix], client=self.rt.redis
        )
        raw: list[Any] = [*stm, *buf]
        for encoded in batch_pages:
            raw.extend(_json_list(encoded))
        pages: dict[str, Page] = {}
        for page in parse_pages(raw):
            pages.setdefault(page.turn_id, page)
        return sorted(pages.values(), key=lambda p: p.seq)

    # -- mid-term -----------------------------------------------------------------------------------------
    def _top_segments(self, user_id: str, query: str, vector: Sequence[float]) -> list[tuple[Hit, float]]:
        """The paper's first stage: segments by Fscore = cos(e_seg, e_query) + Jaccard(K_seg, K_query)."""
        m = self.settings.retrieval_top_segments
        self.rt.segments.ensure()
        hits = self.rt.store.query(
            SEGMENTS, vector=vector, filter={"user_id": user_id}, limit=m * self.fusion.segment_candidates
        )
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
        store = self.rt.store
        self.rt.pages.ensure()
        depth = max(f.depth, 2 * top_k)
        tenant = {"user_id": user_id}
        skip = {p.turn_id for p in short_term}
        fusion = _Fusion(f.rrf_k)
        if segments:
            in_segments = {"user_id": user_id, "segment_id": [hit.id for hit, _ in segments]}
            fusion.add("segment", store.query(PAGES, vector=vector, filter=in_segments, limit=depth),
                       f.segment_weight, skip)
        sparse = sparse if self.rt.pages.hybrid else None
        if f.store_hybrid and f.use_dense and sparse is not None:
            hits = store.query(PAGES, vector=vector, sparse=sparse, filter=tenant, limit=depth)
            fusion.add("hybrid", hits, f.dense_weight, skip)
        else:
            if f.use_dense:
                hits = store.query(PAGES, vector=vector, filter=tenant, limit=depth)
                fusion.add("dense", hits, f.dense_weight, skip)
            if sparse is not None:
                fusion.add("bm25", store.query(PAGES, sparse=sparse, filter=tenant, limit=depth), f.sparse_weight, skip)
        if f.use_dates:
            self._date_lists(fusion, user_id, query, vector, depth, skip)
        ranked = fusion.top(top_k)
        summaries = self._segment_summaries([fusion.hits[t] for t, _ in ranked], segments)
        return [_page(fusion.hits[t], score, summaries, fusion.found_by[t]) for t, score in ranked]

    def _date_lists(
        self, fusion: _Fusion, user_id: str, query: str, vector: Sequence[float], depth: int, skip: set[str]
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
                flt = {"user_id": user_id, "ts": {"gte": window[0], "lt": window[1]}}
                fusion.add("date", self.rt.store.query(PAGES, vector=vector, filter=flt, limit=depth), weight, skip)
                continue
            found = [fusion.hits[turn_id] for turn_id, _ in fusion.top(len(fusion.scores))]
            fusion.add("date", [hit for hit in found if _in_mention(hit, mention, tz)], weight, skip)

    def _segment_summaries(self, hits: list[Hit], segments: list[tuple[Hit, float]]) -> dict[str, Hit]:
        known = {hit.id: hit for hit, _ in segments}
        missing = list({h.payload["segment_id"] for h in hits if h.payload.get("segment_id")} - set(known))
        if missing:
            known.update({hit.id: hit for hit in self.rt.store.retrieve(SEGMENTS, missing)})
        return known

    # -- long-term persona -----------------------------------------------------------------------------
    def _persona(self, user_id: str, assistant_id: str | None, vector: Sequence[float]) -> tuple[Any, list, list]:
        persona = self.rt.persona
        limit = self.settings.retrieval_top_knowledge
        assistant = assistant_id or self.settings.assistant_id
        profile = persona.get_profile(user_id)
        user_facts = persona.search("user", user_id, None, vector, limit)
        assistant_facts = persona.search("assistant", user_id, assistant, vector, limit)
        return profile, user_facts, assistant_facts

    # -- heat ------------------------------------------------------------------------------------------
    def _record_visits(self, user_id: str, keys: UserKeys, pages: list[RetrievedPage]) -> None:
        """N_visit += 1 and last access = now for each segment the answer drew on, plus one coalesced
        refresh_heat; a Redis hiccup here must not fail the retrieval, whose answer is already built."""
        segment_ids = list(dict.fromkeys(p.segment_id for p in pages if p.segment_id))
        if not segment_ids:
            return
        now = repr(time.time())
        try:
            pipe = self.rt.redis.pipeline(transaction=False)
            for sid in segment_ids:
                pipe.hincrby(keys.seg_visit, sid, 1)
            pipe.hset(keys.seg_access, mapping=dict.fromkeys(segment_ids, now))
            pipe.set(keys.heat_kick, "1", nx=True, px=heat_kick_ttl_ms(self.rt.settings))
            kicked = pipe.execute()[-1]
        except Exception as exc:  # noqa: BLE001 - visits are best effort; the context is what matters
            log.warning("could not record segment visits of user %s: %s", user_id, exc)
            return
        if kicked:
            _background().submit(self._send_refresh, user_id, keys)

    def _count(self, total_ms: float) -> None:
        """Retrievals and a latency histogram in the deployment's counters (off the request path)."""
        try:
            count(self.rt.redis, self.rt.keys.stats, retrievals=1, retrieval_ms=math.ceil(total_ms),
                  **{latency_bucket(total_ms): 1})
        except Exception as exc:  # noqa: BLE001 - counters are best effort
            log.debug("could not count a retrieval: %s", exc)

    def _send_refresh(self, user_id: str, keys: UserKeys) -> None:
        if not self.rt.publisher.sender.send(REFRESH_HEAT_TASK, user_id):
            try:
                self.rt.redis.delete(keys.heat_kick)  # let the next retrieval try again
            except Exception:  # noqa: BLE001 - the flag expires on its own
                pass


def _json_list(encoded: str) -> list[Any]:
    try:
        value = json.loads(encoded)
    except ValueError:
        return []
    return value if isinstance(value, list) else []


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


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 1000)


def latency_bucket(ms: float) -> str:
    """The histogram counter a retrieval of `ms` falls in (Prometheus-style upper bounds, not cumulative)."""
    for bound in LATENCY_BUCKETS_MS:
        if ms <= bound:
            return f"retrieval_ms_le_{bound}"
    return "retrieval_ms_le_inf"


def _background() -> ThreadPoolExecutor:
    """One thread for fire-and-forget sends, so a slow broker never shows in retrieval latency."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memoryos-heat-kick")
        return _executor


def retrieve(
    user_id: str,
    query: str,
    *,
    assistant_id: str | None = None,
    top_k: int | None = None,
    runtime: Runtime | None = None,
) -> RetrievedContext:
    """In-process retrieval for a process that owns the vector store (a worker, the embedded setup);
    top_k defaults to MEMORYOS_RETRIEVAL_TOP_PAGES."""
    rt = runtime or get_runtime()
    retriever = rt._once("retriever", lambda: Retriever(rt))  # one per runtime, made once
    return retriever.retrieve(user_id, query, assistant_id=assistant_id, top_k=top_k)

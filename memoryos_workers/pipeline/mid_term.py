"""Promoted pages become mid-term memory: LLM analysis, then segments, chains and heat.

A batch is analysed in one call sized to the model (memoryos_workers.pipeline.segment_calls); a backlog
of several due batches shares calls, as many pages per call as fit. Each step's result is recorded on
the batch (analysis, then plan) before the next step writes, so a task retried after a crash resumes
where it stopped, never calls the LLM twice for one batch, and writes the same values again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import redis

from memoryos_workers.counters import count
from memoryos_workers.embeddings.base import TextEmbedder
from memoryos_workers.llm.base import LLM, LLMNotConfigured
from memoryos_workers.memory.pages import PageStore
from memoryos_workers.memory.segment_stats import SegmentStats
from memoryos_workers.memory.segments import SegmentStore
from memoryos_workers.memory.similarity import centroid
from memoryos_workers.pipeline.batch_records import BatchRecords
from memoryos_workers.pipeline.prompts import SEGMENT_PROMPT_VERSION, previous_link
from memoryos_workers.pipeline.segment_calls import SegmentCalls
from memoryos_workers.pipeline.segmentation import (
    check_segmentation,
    fallback_segmentation,
    normalise,
    split_by_batch,
)
from producers.wire.keys import Keys, UserKeys
from producers.wire.knobs import user_settings
from producers.wire.state import Batch, read_batch
from schemas.memory import BatchAnalysis, SegmentPlan, SegmentRef
from schemas.settings import Settings
from schemas.turns import Page
from schemas.words import text_stems

log = logging.getLogger("memoryos.mid_term")

MAX_SHARED_BATCHES = 8  # batches looked at behind the head for one shared call


class MidTerm:
    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        keys: Keys,
        embedder: TextEmbedder,
        llm: LLM,
        pages: PageStore,
        segments: SegmentStore,
        stats: SegmentStats,
    ) -> None:
        self.settings = settings
        self.redis = client
        self.keys = keys
        self.embedder = embedder
        self.llm = llm
        self.pages = pages
        self.segments = segments
        self.stats = stats
        self.calls = SegmentCalls(llm, _completion_tokens(settings))

    # -- step 1: the analysis (LLM calls sized to the model, or the fallback) --------------------
    def nearby_for(self, user_id: str, pages: Sequence[Page]) -> list[SegmentRef]:
        probe = centroid(self.embedder.embed([p.text() for p in pages]))
        return self.segments.nearby(user_id, probe, limit=3)

    def analyse(
        self, user_id: str, pages: Sequence[Page], previous: dict[str, Any] | None,
        nearby: Sequence[SegmentRef] | None = None, sizes: Sequence[int] | None = None,
    ) -> BatchAnalysis:
        """The analysis of these pages: one batch, or several analysed together (`sizes`: their page counts,
        for the counters: segment_fallbacks counts batches built wholly without the LLM)."""
        nearby = self.nearby_for(user_id, pages) if nearby is None else nearby
        model, version = self.settings.llm_model, SEGMENT_PROMPT_VERSION
        try:
            done = self.calls.analyse(pages, previous, nearby)
        except LLMNotConfigured as exc:
            return BatchAnalysis(source="fallback", result=fallback_segmentation(pages), reason=str(exc))
        # LLMRateLimited goes up: the LLM did not fail, the batch waits for the budget instead.
        done.spend.flush(self.redis, self.keys.stats)
        result = normalise(done.result)
        check_segmentation(result, len(pages), max_topics=None)  # an invariant of our own code, not of the answer
        usage = done.spend.total
        from_llm = any(p.source == "llm" for p in result.pages)
        filled = sum(p.source == "fallback" for p in result.pages)
        parts = split_by_batch(result, sizes or [len(pages)])
        whole = sum(all(p.source == "fallback" for p in part.pages) for part in parts)
        self._count(segment_fallbacks=whole, segment_fallback_pages=filled)
        return BatchAnalysis(
            source="llm" if from_llm else "fallback",
            result=result,
            reason="; ".join(done.problems)[:500],
            llm_model=model,
            prompt_version=version,
            calls=usage.calls,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
        )

    def _analyse_backlog(self, user_id: str, keys: UserKeys, head: Batch, records: BatchRecords) -> None:
        """Analyses the head batch together with the due batches behind it that fit the same call (a
        backlog costs one call for as many pages as fit, not one per batch), and records each batch's
        part of the analysis on it."""
        previous = self._previous_page(keys)
        nearby = self.nearby_for(user_id, head.pages)
        group = [head, *self._followers(keys, head, previous, nearby)]
        for follower in group[1:]:
            records.store_pages(follower)  # before any LLM call, like the head batch
        sizes = [len(b.pages) for b in group]
        whole = self.analyse(user_id, [p for b in group for p in b.pages], previous, nearby, sizes)
        parts = split_by_batch(whole.result, sizes)
        ids = [b.batch_id for b in group]
        analysed: list[tuple[Batch, BatchAnalysis, dict[str, Any] | None]] = []
        for i, (batch, part) in enumerate(zip(group, parts, strict=True)):
            first = i == 0
            analysis = whole.model_copy(update={
                "result": part,
                "source": "llm" if any(p.source == "llm" for p in part.pages) else "fallback",
                "calls": whole.calls if first else 0,
                "prompt_tokens": whole.prompt_tokens if first else 0,
                "completion_tokens": whole.completion_tokens if first else 0,
                "shared_with": [b for b in ids if b != batch.batch_id],
            })
            analysed.append((batch, analysis, previous))
            previous = previous_link(batch.pages[-1], part.pages[-1].chain_summary)
        self._count(segment_batches_shared=len(group) - 1)
        for batch, analysis, prev in reversed(analysed):  # the head last: once it is recorded, all are
            fields = {"analysis": analysis.model_dump_json(), "previous": json.dumps(prev)}
            records.record(batch.batch_id, **({"state": "analyzed"} if batch is head else {}), **fields)
        if len(group) > 1:
            log.info("user %s: %d batches analysed together (%d pages)", user_id, len(group), len(whole.result.pages))

    def _followers(
        self, keys: UserKeys, head: Batch, previous: dict[str, Any] | None, nearby: Sequence[SegmentRef]
    ) -> list[Batch]:
        """The due, not yet analysed batches right behind the head whose pages fit one call with it."""
        pages, out = list(head.pages), []
        if not self.llm.configured or not self.calls.fits(pages, previous, nearby):
            return out
        now = time.time()
        for batch_id in self.redis.lrange(keys.batches, 1, MAX_SHARED_BATCHES):
            if batch_id == head.batch_id:
                break
            batch = read_batch(self.redis, keys, batch_id)
            if batch is None or batch.not_before > now or batch.extra.get("analysis"):
                break
            if batch.state not in ("pending", "stored") or not self.calls.fits(pages + batch.pages, previous, nearby):
                break
            pages += batch.pages
            out.append(batch)
        return out

    # -- the whole step for one stored batch -----------------------------------------------------
    def segment(self, user_id: str, keys: UserKeys, batch: Batch, records: BatchRecords) -> None:
        """The stored batch analysed, planned and applied to its segments; LockLost when another worker took
        over (the caller stops writing)."""
        pages = batch.pages
        if not batch.extra.get("analysis"):
            self._analyse_backlog(user_id, keys, batch, records)
            batch = read_batch(self.redis, keys, batch.batch_id) or batch
        analysis = BatchAnalysis.model_validate_json(batch.extra["analysis"])
        previous = json.loads(batch.extra.get("previous") or "null")
        mine = user_settings(self.redis, keys, self.settings)  # this user's capacities and thresholds
        raw_plan = batch.extra.get("plan")
        plan = SegmentPlan.model_validate_json(raw_plan) if raw_plan else None
        if plan is None:
            theta = mine.mid_term_similarity_threshold
            plan = self.segments.plan(user_id, batch.batch_id, analysis.result, theta=theta)
            records.record(batch.batch_id, state="planned", plan=plan.model_dump_json())
        provenance = {
            "source": analysis.source,
            "llm_model": analysis.llm_model,
            "prompt_version": analysis.prompt_version,
        }
        # Once applied, the writes are done: writing again would bring back segments evicted since.
        if batch.extra.get("applied") != "1":
            self.segments.write(user_id, pages[0].assistant_id, plan, provenance)
            self._annotate_pages(user_id, pages, previous, analysis, plan)
            records.apply_segments(batch.batch_id, self._apply_args(batch, analysis, plan))
        evicted = self.evict(user_id, keys, mine.mid_term_capacity)
        if evicted:
            log.info("evicted %d cold segment(s) of user %s", len(evicted), user_id)
            self._count(segments_evicted=len(evicted))

    def evict(self, user_id: str, keys: UserKeys, capacity: int) -> list[str]:
        """Past capacity, the lowest-heat segments leave with their pages. Idempotent."""
        if self.stats.count(keys) <= capacity:
            return []
        heats = self.stats.heats(keys)
        victims = sorted(heats, key=lambda sid: (heats[sid], sid))[: len(heats) - capacity]
        self.pages.delete_in_segments(user_id, victims)
        self.segments.delete(victims)
        self.stats.delete(keys, victims)
        return victims

    def _apply_args(self, batch: Batch, analysis: BatchAnalysis, plan: SegmentPlan) -> list[Any]:
        """segment_apply.lua's arguments after the token and the batch id."""
        last_page = json.dumps(previous_link(batch.pages[-1], analysis.result.pages[-1].chain_summary),
                               ensure_ascii=False)
        # Counts only: heat is computed when read (memory/heat.py), so no weight travels to the script.
        args: list[Any] = [repr(time.time()), last_page]
        for a in plan.assignments:
            args += [a.segment_id, len(a.page_indices)]
        return args

    def _annotate_pages(
        self,
        user_id: str,
        pages: Sequence[Page],
        previous: dict[str, Any] | None,
        analysis: BatchAnalysis,
        plan: SegmentPlan,
    ) -> None:
        """Segment, chain links, chain summary and keywords on each page's payload."""
        where = {i: a for a in plan.assignments for i in a.page_indices}
        chain = analysis.result.pages
        for i, page in enumerate(pages):
            assignment = where[i]
            prev_id = None
            if chain[i].continues_previous:
                prev_id = pages[i - 1].turn_id if i > 0 else (previous or {}).get("turn_id")
            next_id = pages[i + 1].turn_id if i + 1 < len(pages) and chain[i + 1].continues_previous else None
            self.pages.annotate(
                user_id,
                page.turn_id,
                {
                    "segment_id": assignment.segment_id,
                    "theme": assignment.theme,
                    "keywords": assignment.keywords,
                    "chain_prev": prev_id,
                    "chain_next": next_id,
                    "chain_summary": chain[i].chain_summary,
                    "chain_stems": text_stems(chain[i].chain_summary),  # read by retrieval's context fitting
                    "analysis": chain[i].source,
                    "persona": "pending",
                },
            )
        if previous and chain and chain[0].continues_previous:
            self.pages.annotate(user_id, previous["turn_id"], {"chain_next": pages[0].turn_id})

    def _previous_page(self, keys: UserKeys) -> dict[str, Any] | None:
        raw = self.redis.hget(keys.state, "last_page")
        return json.loads(raw) if raw else None

    def _count(self, **counters: int) -> None:
        count(self.redis, self.keys.stats, **counters)


def _completion_tokens(settings: Settings) -> int:
    return int(getattr(settings, "llm_completion_tokens", 2048))

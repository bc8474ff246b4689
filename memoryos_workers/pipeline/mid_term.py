"""Promoted pages become mid-term memory: one LLM call per batch, then segments, chains and heat.

Each step's result is recorded on the batch (analysis, then plan) before the next step writes, so
a task retried after a crash resumes where it stopped, never calls the LLM twice for one batch, and
writes the same values again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from memoryos_workers.counters import count, llm_usage
from memoryos_workers.embeddings.base import TextEmbedder
from memoryos_workers.llm.base import LLM, LLMError, LLMNotConfigured, LLMRateLimited, Usage
from memoryos_workers.memory.pages import PageStore
from memoryos_workers.memory.segment_stats import SegmentStats
from memoryos_workers.memory.segments import SegmentStore
from memoryos_workers.memory.similarity import centroid
from memoryos_workers.pipeline.prompts import SEGMENT_PROMPT_VERSION, segmentation_messages
from memoryos_workers.pipeline.segmentation import check_segmentation, fallback_segmentation, normalise
from producers.wire.keys import Keys, UserKeys
from producers.wire.knobs import user_settings
from producers.wire.scripts import Scripts
from producers.wire.state import Batch
from schemas.memory import BatchAnalysis, SegmentationResult, SegmentPlan
from schemas.settings import Settings
from schemas.turns import Page

log = logging.getLogger("memoryos.mid_term")

Update = Callable[..., None]  # records fields on the batch under the fencing token


class MidTerm:
    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        keys: Keys,
        scripts: Scripts,
        embedder: TextEmbedder,
        llm: LLM,
        pages: PageStore,
        segments: SegmentStore,
        stats: SegmentStats,
    ) -> None:
        self.settings = settings
        self.redis = client
        self.keys = keys
        self.scripts = scripts
        self.embedder = embedder
        self.llm = llm
        self.pages = pages
        self.segments = segments
        self.stats = stats

    # -- step 1: one structured call (or the fallback) ------------------------------------------
    def analyse(self, user_id: str, pages: Sequence[Page], previous: dict[str, Any] | None) -> BatchAnalysis:
        probe = centroid(self.embedder.embed([p.text() for p in pages]))
        nearby = self.segments.nearby(user_id, probe, limit=3)
        messages = segmentation_messages(pages, previous, nearby)
        model, version = self.settings.llm_model, SEGMENT_PROMPT_VERSION
        try:
            answer = self.llm.structured(
                messages, SegmentationResult, check=lambda r: check_segmentation(r, len(pages)), name="segmentation"
            )
        except LLMNotConfigured as exc:
            return BatchAnalysis(source="fallback", result=fallback_segmentation(pages), reason=str(exc))
        except LLMRateLimited:
            raise  # the LLM did not fail: the batch waits for the budget instead of taking the fallback
        except LLMError as exc:
            log.warning("segmentation for user %s fell back after LLM failures: %s", user_id, exc)
            spent = exc.usage or Usage()
            self._count(segment_fallbacks=1, **llm_usage("segmentation", spent))
            return BatchAnalysis(
                source="fallback",
                result=fallback_segmentation(pages),
                reason=str(exc)[:500],
                llm_model=model,
                prompt_version=version,
            )
        usage = answer.usage
        self._count(**llm_usage("segmentation", usage))
        return BatchAnalysis(
            source="llm",
            result=normalise(answer.value),
            llm_model=model,
            prompt_version=version,
            calls=usage.calls,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
        )

    # -- the whole step for one stored batch -----------------------------------------------------
    def segment(self, user_id: str, keys: UserKeys, batch: Batch, update: Update, token: str) -> bool:
        """Returns False when the lock was lost (the caller stops writing)."""
        pages = batch.pages
        raw = batch.extra.get("analysis")
        if raw:
            analysis = BatchAnalysis.model_validate_json(raw)
            previous = json.loads(batch.extra.get("previous") or "null")
        else:
            # The previous page is recorded with the analysis: once this batch is applied, the
            # user's "last page" is this batch's own, and a replay must still link to the one before.
            previous = self._previous_page(keys)
            analysis = self.analyse(user_id, pages, previous)
            update(state="analyzed", analysis=analysis.model_dump_json(), previous=json.dumps(previous))
        mine = user_settings(self.redis, keys, self.settings)  # this user's capacities and thresholds
        raw_plan = batch.extra.get("plan")
        plan = SegmentPlan.model_validate_json(raw_plan) if raw_plan else None
        if plan is None:
            theta = mine.mid_term_similarity_threshold
            plan = self.segments.plan(user_id, batch.batch_id, analysis.result, theta=theta)
            update(state="planned", plan=plan.model_dump_json())
        provenance = {
            "source": analysis.source,
            "llm_model": analysis.llm_model,
            "prompt_version": analysis.prompt_version,
        }
        # Once applied, the writes are done: writing again would bring back segments evicted since.
        if batch.extra.get("applied") != "1":
            self.segments.write(user_id, pages[0].assistant_id, plan, provenance)
            self._annotate_pages(user_id, pages, previous, analysis, plan)
            applied = self.scripts.segment_apply(
                keys=keys.script_keys(), args=self._apply_args(token, batch, analysis, plan)
            )
            if int(applied) == -1:
                return False
        evicted = self.evict(user_id, keys, mine.mid_term_capacity)
        if evicted:
            log.info("evicted %d cold segment(s) of user %s", len(evicted), user_id)
            self._count(segments_evicted=len(evicted))
        return True

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

    def _apply_args(self, token: str, batch: Batch, analysis: BatchAnalysis, plan: SegmentPlan) -> list[Any]:
        s = self.settings
        last = batch.pages[-1]
        last_page = json.dumps(
            {
                "turn_id": last.turn_id,
                "time": last.timestamp.isoformat(),
                "user": last.user_input[:1000],
                "assistant": last.agent_response[:1000],
                "chain_summary": analysis.result.pages[-1].chain_summary,
            },
            ensure_ascii=False,
        )
        args: list[Any] = [token, batch.batch_id, repr(time.time()), s.heat_alpha, s.heat_beta, s.heat_gamma, last_page]
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
                    "analysis": analysis.source,
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

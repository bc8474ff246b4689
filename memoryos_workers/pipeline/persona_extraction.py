"""Heat refresh and persona extraction (paper section 3.2-3.3), coalesced per user.

refresh_heat recomputes heat (recency from the clock) and, when segments are hot and hold pages the
persona has not seen, sends one extract_persona. extract_persona makes one LLM call covering the
unanalysed pages of every hot segment, then marks them analysed and resets those segments'
L_interaction (by raising their analysed base), as the paper does.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence

import redis

from memoryos_workers.counters import count, llm_usage
from memoryos_workers.llm.base import LLM, LLMError, LLMRateLimited, Usage
from memoryos_workers.llm.token_budget import budget_retry_after
from memoryos_workers.memory.pages import PageStore
from memoryos_workers.memory.persona_store import PersonaStore
from memoryos_workers.memory.segment_stats import HeatRefresh, SegmentStats
from memoryos_workers.pipeline.backoff import retry_delay
from memoryos_workers.pipeline.locks import UserLock
from memoryos_workers.pipeline.profile_merge import merge_profile
from memoryos_workers.pipeline.prompts import PERSONA_PROMPT_VERSION, persona_messages
from producers.sender import TaskSender
from producers.wire import state
from producers.wire.contract import EXTRACT_PERSONA_TASK
from producers.wire.keys import Keys, UserKeys
from producers.wire.knobs import user_settings
from schemas.persona import PersonaExtraction
from schemas.settings import Settings
from schemas.turns import Page

log = logging.getLogger("memoryos.persona")
MAX_PERSONA_PAGES = 40


class PersonaWorker:
    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        keys: Keys,
        sender: TaskSender,
        llm: LLM,
        pages: PageStore,
        persona: PersonaStore,
        stats: SegmentStats,
        refresh: HeatRefresh,
    ) -> None:
        self.settings = settings
        self.redis = client
        self.keys = keys
        self.sender = sender
        self.llm = llm
        self.pages = pages
        self.persona = persona
        self.stats = stats
        self.refresh = refresh

    def refresh_heat(self, user_id: str) -> bool:
        keys = self.keys.user(user_id)
        # Claim the persona flag before dropping the heat flag: wait_idle never sees a gap between them.
        claimed = self.redis.set(keys.persona_kick, "1", nx=True, px=int(self.settings.kick_stale_after * 1000))
        self.refresh.started(keys)
        if not claimed:
            return False  # an extraction is already on its way and reads the heat itself
        tau = user_settings(self.redis, keys, self.settings).mid_term_heat_threshold
        if not self.stats.hot(keys, tau) or not self.llm.configured:
            self.redis.delete(keys.persona_kick)
            return False  # without an LLM the persona cannot be extracted; heat is still kept current
        if not self.sender.send(EXTRACT_PERSONA_TASK, user_id):
            self.redis.delete(keys.persona_kick)
            return False
        return True

    # -- extraction ------------------------------------------------------------------------------
    def extract(self, user_id: str, force: bool = False) -> dict[str, int]:
        """At most one LLM call per drain. Returns counters of what changed."""
        keys = self.keys.user(user_id)
        result: dict[str, int] = {}
        while True:
            lock = UserLock(self.redis, keys, self.settings.lock_ttl, lock_key=keys.persona_lock)
            if not lock.acquire():
                return result
            try:
                self.redis.delete(keys.persona_kick)  # cleared first: a request from now on is seen below
                result = self._attempt(user_id, keys, force)
            finally:
                lock.release()
            if not self.redis.exists(keys.persona_kick):
                return result  # else a request came in meanwhile (its task found the lock held): go again

    def _attempt(self, user_id: str, keys: UserKeys, force: bool) -> dict[str, int]:
        """Honours a scheduled retry: before its not_before, a kick from a new drain waits for the sweep."""
        retry_at = self.redis.hget(keys.state, "persona_not_before")
        if retry_at is not None and not force and time.time() < float(retry_at):
            return {"deferred": 1}
        result = self._extract_once(user_id, keys, self.redis.get(keys.epoch), force)
        if "failed" not in result and "rate_limited" not in result:
            self.redis.hdel(keys.state, "persona_attempts", "persona_not_before")
        return result

    def _extract_once(self, user_id: str, keys: UserKeys, epoch: str | None, force: bool = False) -> dict[str, int]:
        mine = user_settings(self.redis, keys, self.settings)  # one read of this user's knobs per attempt
        hot = self.stats.hot(keys, float("-inf") if force else mine.mid_term_heat_threshold)
        if not hot:
            return {}
        hits = self.pages.pending_persona(user_id, hot)
        per_segment = Counter(h.payload["segment_id"] for h in hits)
        if not hits:  # nothing left to read: just move the analysed base up
            self.stats.mark_analysed(keys, dict.fromkeys(hot, 0), sync=True)
            return {}
        pages = [Page.model_validate(h.payload) for h in hits[-MAX_PERSONA_PAGES:]]
        old = self.persona.get_profile(user_id)
        messages = persona_messages(old.model_dump(mode="json", include={"summary", "traits"}) if old else None, pages)
        try:
            answer = self.llm.structured(messages, PersonaExtraction, name="persona")
        except LLMRateLimited:
            return self._wait_for_budget(user_id, keys)
        except LLMError as exc:
            return self._failed(user_id, keys, hits, exc)
        value, usage = answer.value, answer.usage
        if self.redis.get(keys.epoch) != epoch:
            return {"forgotten": 1}  # forget ran during the call: its pages must not come back as facts
        now = time.time()
        provenance = {
            "llm_model": self.settings.llm_model,
            "prompt_version": PERSONA_PROMPT_VERSION,
            "source_turns": [p.turn_id for p in pages][-10:],
        }
        profile = merge_profile(
            old,
            value.profile,
            user_id=user_id,
            now=now,
            llm_model=self.settings.llm_model,
            prompt_version=PERSONA_PROMPT_VERSION,
        )
        self.persona.put_profile(profile)
        # The copy a retrieval past its deadline answers with; forget deletes it after this lock is released.
        state.save_profile_copy(self.redis, keys, profile.model_dump_json())
        assistant_id = pages[-1].assistant_id or self.settings.assistant_id
        capacity = mine.long_term_knowledge_capacity
        user_out = self.persona.add_facts("user", user_id, None, value.user_facts, provenance, capacity)
        assistant_out = self.persona.add_facts(
            "assistant", user_id, assistant_id, value.assistant_facts, provenance, capacity
        )
        self._mark_analysed(keys, [h.payload["turn_id"] for h in hits], per_segment, state="done", user_id=user_id)
        self._count(persona_extractions=1, **llm_usage("persona", usage))
        log.info("persona of user %s updated from %d pages (%d hot segments)", user_id, len(hits), len(per_segment))
        return {
            "calls": usage.calls,
            "pages": len(hits),
            "user_facts": user_out["added"],
            "assistant_facts": assistant_out["added"],
        }

    def _mark_analysed(
        self, keys: UserKeys, turn_ids: Sequence[str], per_segment: dict[str, int], *, state: str, user_id: str
    ) -> None:
        self.pages.mark_persona(user_id, turn_ids, state)
        self.stats.mark_analysed(keys, per_segment)

    def _wait_for_budget(self, user_id: str, keys: UserKeys) -> dict[str, int]:
        """Scheduled like a retry, but not counted as one: waiting for the budget never dead-letters."""
        self._schedule(user_id, keys, time.time() + budget_retry_after(self.settings.llm_rate_limit_max_wait))
        return {"rate_limited": 1}

    def _schedule(self, user_id: str, keys: UserKeys, retry_at: float) -> None:
        # In Redis, not as a Celery countdown: a countdown held by a killed worker returns only after the
        # visibility timeout, while the sweep re-kicks a due retry within its interval.
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(keys.state, "persona_not_before", repr(retry_at))
        pipe.zadd(self.keys.sweep, {user_id: retry_at}, lt=True)
        pipe.execute()

    def _failed(self, user_id: str, keys: UserKeys, hits: Sequence, exc: LLMError) -> dict[str, int]:
        """Retried later with backoff; after max attempts the pages are dead-lettered (recorded with
        the error, marked so they stop re-triggering) and the old profile stays as it was."""
        spent = exc.usage or Usage()
        self._count(**llm_usage("persona", spent))
        attempts = self.redis.hincrby(keys.state, "persona_attempts", 1)
        if attempts < self.settings.max_attempts:
            delay = retry_delay(attempts, base=self.settings.retry_backoff_base, cap=self.settings.retry_backoff_max)
            log.warning(
                "persona extraction for %s failed (attempt %d): %s; retry in %.1f s", user_id, attempts, exc, delay
            )
            self._schedule(user_id, keys, time.time() + delay)
            return {"failed": 1}
        record = {
            "kind": "persona",
            "error": str(exc)[:2000],
            "at": time.time(),
            "attempts": attempts,
            "turn_ids": [h.payload["turn_id"] for h in hits],
        }
        self.redis.rpush(keys.dead_persona, json.dumps(record))
        self.redis.zadd(self.keys.dead_index, {user_id: time.time()})
        per_segment = Counter(h.payload["segment_id"] for h in hits)
        self._mark_analysed(keys, record["turn_ids"], per_segment, state="dead", user_id=user_id)
        self._count(persona_dead_letters=1)
        log.error("persona extraction for %s dead-lettered after %d attempts: %s", user_id, attempts, exc)
        return {"dead": 1}

    def _count(self, **counters: int) -> None:
        count(self.redis, self.keys.stats, **counters)

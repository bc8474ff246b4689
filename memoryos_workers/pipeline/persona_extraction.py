"""Heat refresh and persona extraction (paper section 3.2-3.3), coalesced per user.

refresh_heat recomputes heat (recency from the clock) and, when segments are hot and hold at least
MEMORYOS_PERSONA_MIN_PAGES pages the persona has not seen (or the first of them has waited
MEMORYOS_PERSONA_MAX_DELAY), sends one extract_persona: its calls stay few whatever the traffic.
extract_persona makes one LLM call over as many of those pages as fit the model's window, oldest first,
then marks them analysed and resets those segments' L_interaction (by raising their analysed base), as
the paper does. A prompt over the window or an answer cut at the token limit makes the call smaller at
once (the whole profile of a cut answer is kept); neither counts as a failed attempt.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence

import redis

from memoryos_workers.counters import count
from memoryos_workers.llm.base import (
    LLM,
    LLMContextOverflow,
    LLMError,
    LLMRateLimited,
    LLMTruncated,
    MalformedOutput,
)
from memoryos_workers.llm.spend import Spend
from memoryos_workers.llm.token_budget import budget_retry_after
from memoryos_workers.memory.fact_changes import apply_links, replaces
from memoryos_workers.memory.pages import PageStore
from memoryos_workers.memory.persona_store import PersonaStore, stated_time
from memoryos_workers.memory.segment_stats import HeatRefresh, SegmentStats
from memoryos_workers.pipeline import shown_facts
from memoryos_workers.pipeline.answer_schemas import (
    MAX_TRAITS_PER_CALL,
    AnyJSON,
    parse_partial,
    persona_limits,
    persona_schema,
    read_persona,
)
from memoryos_workers.pipeline.backoff import retry_delay
from memoryos_workers.pipeline.locks import UserLock
from memoryos_workers.pipeline.persona_review import ask_again, reviewed
from memoryos_workers.pipeline.profile_merge import merge_profile, prompt_profile, trait_ids
from memoryos_workers.pipeline.prompts import PERSONA_PROMPT_VERSION, persona_messages
from producers.sender import TaskSender
from producers.tracing import traced
from producers.wire import state
from producers.wire.contract import EXTRACT_PERSONA_TASK
from producers.wire.keys import Keys, UserKeys
from producers.wire.knobs import user_settings
from schemas.persona import Fact, KnowledgeEntry, PersonaExtraction, UserProfile
from schemas.settings import Settings
from schemas.turns import Page

log = logging.getLogger("memoryos.persona")
SHOWN_SHARE = 4  # the shown facts take at most a quarter of the prompt, and only room the pages leave ...
SHOWN_FLOOR = 8  # ... but at least an eighth when the window bounds the call (see PersonaWorker._plan)


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
        hot = self.stats.hot(keys, tau)
        if not hot or not self.llm.configured or not self._enough_waiting(user_id, keys, hot):
            self.redis.delete(keys.persona_kick)
            return False  # without an LLM the persona cannot be extracted; heat is still kept current
        if not self.sender.send(EXTRACT_PERSONA_TASK, user_id):
            self.redis.delete(keys.persona_kick)
            return False
        return True

    def _enough_waiting(self, user_id: str, keys: UserKeys, hot: Sequence[str]) -> bool:
        """Enough unread pages for a call, or the first of them waited long enough. Otherwise the wait is
        recorded (persona_due_at, in the sweep index), so a quiet user's pages are read in time."""
        if self.stats.unanalysed(keys, hot) >= self.settings.persona_min_pages:
            return True
        due = self.redis.hget(keys.state, "persona_due_at")
        if due is not None:
            return time.time() >= float(due)
        self._wait_for_more(user_id, keys)
        return False

    def _wait_for_more(self, user_id: str, keys: UserKeys) -> None:
        at = time.time() + self.settings.persona_max_delay
        pipe = self.redis.pipeline(transaction=False)
        pipe.hsetnx(keys.state, "persona_due_at", repr(at))
        pipe.zadd(self.keys.sweep.of(user_id), {user_id: at}, lt=True)
        pipe.execute()

    # -- extraction ------------------------------------------------------------------------------
    @traced("memoryos.extract_persona", lambda self, user_id, force=False: {"memoryos.user_id": user_id},
            lambda done: {f"memoryos.{k}": v for k, v in done.items() if isinstance(v, int)})
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
        hits = self.pages.pending_persona(user_id, hot) if hot else []
        if not hits:  # nothing left to read: just move the analysed base up
            if hot:
                self.stats.mark_analysed(keys, dict.fromkeys(hot, 0), sync=True)
            self.redis.hdel(keys.state, "persona_due_at")
            return {}
        pages = [Page.model_validate(h.payload) for h in hits]
        old = self.persona.get_profile(user_id)
        current = prompt_profile(old)
        spend = Spend()
        n, shown = self._plan(user_id, current, pages)
        try:
            value, n = self._ask(current, pages, n, spend, shown, trait_ids(old))
        except LLMRateLimited:
            spend.flush(self.redis, self.keys.stats)
            return self._wait_for_budget(user_id, keys)
        except LLMError as exc:
            spend.flush(self.redis, self.keys.stats)
            return self._failed(user_id, keys, hits[:n], exc)
        value = reviewed(value, pages[:n], ask_again(  # the post-check: repairs, at most one retry (persona_review)
            self.llm, self._messages(current, pages[:n], shown),
            persona_schema(n, self._completion_tokens, list(shown)), self._completion_tokens, spend, _usable_persona,
        ), self._count, user_id, *_known(old, shown))
        spend.flush(self.redis, self.keys.stats)
        if self.redis.get(keys.epoch) != epoch:
            return {"forgotten": 1}  # forget ran during the call: its pages must not come back as facts
        sent, read = pages[:n], hits[:n]
        now = time.time()
        provenance = {
            "llm_model": self.settings.llm_model,
            "prompt_version": PERSONA_PROMPT_VERSION,
            "source_turns": [p.turn_id for p in sent][-10:],
        }
        trait_counts: Counter[str] = Counter()
        profile = merge_profile(
            old,
            value.profile,
            user_id=user_id,
            now=now,
            llm_model=self.settings.llm_model,
            prompt_version=PERSONA_PROMPT_VERSION,
            seen=[_seen(t.page, sent) for t in value.profile.traits],
            counts=trait_counts,
        )
        self.persona.put_profile(profile)
        # The copy a retrieval past its deadline answers with; forget deletes it after this lock is released.
        state.save_profile_copy(self.redis, keys, profile.model_dump_json())
        assistant_id = sent[-1].assistant_id or self.settings.assistant_id
        capacity = mine.long_term_knowledge_capacity
        starts = [_fact_time(f, sent) for f in value.user_facts]
        user_out = self.persona.add_facts(
            "user", user_id, None, value.user_facts, provenance, capacity, times=starts,
            keep_apart=[[shown[s].fact_id for s in replaces(f, shown)[0]] for f in value.user_facts])
        links = apply_links(self.persona, value.user_facts, user_out["ids"], [t for t, _ in starts], shown,
                            value.retired, retired_at=sent[-1].timestamp.timestamp())
        assistant_out = self.persona.add_facts(
            "assistant", user_id, assistant_id, value.assistant_facts, provenance, capacity,
            times=[(sent[-1].timestamp.timestamp(), provenance["source_turns"])] * len(value.assistant_facts),
        )
        per_segment = Counter(h.payload["segment_id"] for h in read)
        self._mark_analysed(keys, [h.payload["turn_id"] for h in read], per_segment, state="done", user_id=user_id)
        self.redis.hdel(keys.state, "persona_due_at")
        if n < len(hits):  # the rest did not fit this call: read by the next one, at the latest after the delay
            self._wait_for_more(user_id, keys)
        usage = spend.total
        self._count(persona_extractions=1)
        log.info("persona of user %s updated from %d of %d pages (%d hot segments)", user_id, n, len(hits),
                 len(per_segment))
        return {
            "calls": usage.calls,
            "pages": n,
            "user_facts": user_out["added"],
            "assistant_facts": assistant_out["added"],
            **{f"facts_{k}": v for k, v in links.items()},
            **{f"traits_{k}": v for k, v in trait_counts.items()},
        }

    def _limits(self, n_pages: int) -> tuple[int, int]:
        return persona_limits(n_pages, self._completion_tokens)

    @property
    def _completion_tokens(self) -> int:
        return int(getattr(self.settings, "llm_completion_tokens", 2048))

    def _messages(self, current: dict | None, pages: Sequence[Page], shown: dict[str, KnowledgeEntry],
                  ) -> list[dict[str, str]]:
        return persona_messages(current, pages, (*self._limits(len(pages)), MAX_TRAITS_PER_CALL),
                                shown_facts.prompt_data(shown))

    def _plan(self, user_id: str, current: dict | None, pages: Sequence[Page]) -> tuple[int, dict[str, KnowledgeEntry]]:
        """How many pages the call reads, and which current facts it is shown. When every waiting page fits,
        pages first: the facts get only the room the pages leave (at most 1/SHOWN_SHARE of the prompt), so
        showing facts never leaves a page for one more call (it did: conv-26 took 5 persona calls instead of
        4 when the facts took their share first). When the window, not the pages waiting, bounds the call,
        pages are left for the next call anyway: the facts get at least 1/SHOWN_FLOOR of the prompt, or a
        small window (a 4k model) would never show one and nothing could be superseded."""
        budget = self.llm.prompt_budget(self._completion_tokens)
        n = self._how_many_fit(current, pages, {})
        if n < len(pages):
            shown = shown_facts.choose(self.persona, user_id, pages[:n], budget // SHOWN_FLOOR)
            n = self._how_many_fit(current, pages, shown)
        else:
            used = self.llm.count_tokens(self._messages(current, pages[:n], {}))
            room = min(budget // SHOWN_SHARE, budget - used)
            shown = shown_facts.choose(self.persona, user_id, pages[:n], room) if room > 0 else {}
        while shown and self.llm.count_tokens(self._messages(current, pages[:n], shown)) > budget:
            shown.popitem()  # the estimate was short: the farthest fact goes, not a page
        return n, shown

    def _how_many_fit(self, current: dict | None, pages: Sequence[Page], shown: dict[str, KnowledgeEntry]) -> int:
        """The most of the oldest pages whose prompt fits the window with room for the answer (at least 1)."""
        budget = self.llm.prompt_budget(self._completion_tokens)
        low, high = 1, len(pages)
        while low < high:
            mid = (low + high + 1) // 2
            if self.llm.count_tokens(self._messages(current, pages[:mid], shown)) <= budget:
                low = mid
            else:
                high = mid - 1
        return low

    def _ask(self, current: dict | None, pages: Sequence[Page], n: int, spend: Spend,
             shown: dict[str, KnowledgeEntry], traits: Sequence[str] = ()) -> tuple[PersonaExtraction, int]:
        """The answer over the first n pages; a prompt over the window or a cut answer halves n at once (the
        same request is never sent again). Raises LLMError when even one page cannot be read."""
        purpose = "persona"
        while True:
            try:
                answer = self.llm.structured(
                    self._messages(current, pages[:n], shown), AnyJSON, name="persona", schema=persona_schema(
                        n, self._completion_tokens, list(shown), traits), max_tokens=self._completion_tokens,
                    check=_usable_persona,
                )
            except LLMContextOverflow as exc:
                spend.add(purpose, exc.usage)
                error: LLMError = exc
            except LLMTruncated as exc:
                spend.add(purpose, exc.usage)
                salvaged = read_persona(parse_partial(exc.partial_text))
                if salvaged is not None:
                    return salvaged, n
                error = exc
            except LLMError as exc:
                spend.add(purpose, exc.usage)
                raise
            else:
                spend.add(purpose, answer.usage)
                value = read_persona(answer.value.root)
                assert value is not None  # _usable_persona let it through
                return value, n
            if n == 1:
                raise error
            log.info("persona call over %d pages too large (%s); asking over %d", n, type(error).__name__, n // 2)
            n, purpose = n // 2, "retry"

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
        pipe.zadd(self.keys.sweep.of(user_id), {user_id: retry_at}, lt=True)
        pipe.execute()

    def _failed(self, user_id: str, keys: UserKeys, hits: Sequence, exc: LLMError) -> dict[str, int]:
        """Retried later with backoff; after max attempts the pages are dead-lettered (recorded with
        the error, marked so they stop re-triggering) and the old profile stays as it was."""
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


def _known(old: UserProfile | None, shown: dict[str, KnowledgeEntry]) -> tuple[list[str], list[str], list[str]]:
    """What the call was shown besides its pages, which its answer may restate (the post-check's sources):
    about the user (profile and user facts), the assistant facts, and the user facts alone (a near copy of
    one is a confirmation of it)."""
    profile = [old.summary, *(f"{t.dimension} {t.evidence}" for t in old.traits)] if old else []
    user = [e.text for e in shown.values() if e.kind != "assistant"]
    return [*profile, *user], [e.text for e in shown.values() if e.kind == "assistant"], user


def _fact_time(fact: Fact, sent: Sequence[Page]) -> tuple[float, list[str]]:
    """When a new fact became true and its source turn: the date it states wins, else the time of the page
    it names (the call's last page when it names none)."""
    turn, at = _seen(fact.page, sent)
    return stated_time(fact.date) or at, [turn]


def _seen(index: int | None, sent: Sequence[Page]) -> tuple[str, float]:
    """The turn an answer's item names by page index, and its time (the call's last page when it names none
    or one it was not sent)."""
    page = sent[index] if index is not None and 0 <= index < len(sent) else sent[-1]
    return page.turn_id, page.timestamp.timestamp()


def _usable_persona(value: AnyJSON) -> None:
    """An answer without a whole profile has nothing to use: asked again whole (the client's retry)."""
    if read_persona(value.root) is None:
        raise MalformedOutput("the answer has no valid `profile`")

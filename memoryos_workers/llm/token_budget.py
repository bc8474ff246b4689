"""The shared LLM token budget: every worker of a deployment draws from one tokens-per-minute limit.

A generic cell rate algorithm (GCRA) over one Redis key, the "theoretical arrival time" (TAT) of the
budget. A call reserves its estimated tokens before it is made: TAT moves forward by cost x (60 / tpm)
seconds, and the caller sleeps until TAT minus one minute of burst. After the call, the reservation is
corrected by the tokens the provider reported (positive or negative). Foreground calls (answers to a
user) never wait: they are only charged, so background work yields to them.

Why not a rate-limit library: `limits` and `pyrate-limiter` count per window (a call larger than a
window's share never fits, and their moving windows store one entry per token), and neither corrects
a reservation afterwards, which is how a token budget has to work when the cost is known only after
the answer. The whole algorithm is the short Lua script below; Redis's own clock (TIME) is used, so
workers on machines with skewed clocks share one timeline.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import redis

from memoryos_workers.counters import count
from memoryos_workers.llm.base import RateLimited
from producers.wire.keys import Sharded
from producers.wire.scripts import lua_source

log = logging.getLogger("memoryos.rate_limit")

# The algorithm runs in Redis (producers/wire/lua/token_budget.lua); a negative cost is a refund, a max
# wait of -1 charges and never refuses.
BURST_SECONDS = 60.0  # a whole minute's budget may be spent at once, as providers allow


class TokenBudget:
    """One deployment's tokens-per-minute budget, shared by all its workers through Redis (the
    :class:`~memoryos_workers.llm.base.Budget` the LLM client draws on)."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        tokens_per_minute: int,
        *,
        max_wait: float,
        stats_key: Sharded | None = None,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        if tokens_per_minute <= 0:
            raise ValueError("tokens_per_minute must be positive (0 means no budget: do not create one)")
        self._redis = client
        self._key = key
        self.capacity = tokens_per_minute
        self._interval = 60.0 / tokens_per_minute
        self._max_wait = max_wait
        self._stats_key = stats_key
        self._sleep = sleep
        self._script = client.register_script(lua_source("token_budget"))

    def fit(self, tokens: int) -> int:
        """What a call of `tokens` reserves: at most a whole minute's budget. A larger call would never
        fit and be put off for ever; it waits for a full budget instead, and its correction afterwards
        charges the rest, which slows the calls after it."""
        return min(tokens, self.capacity)

    def reserve(self, tokens: int) -> float:
        """Takes fit(tokens) from the budget, sleeping until they are available; returns the seconds
        slept. Raises RateLimited, reserving nothing, when that would be longer than max_wait."""
        granted, wait = self._run(self.fit(tokens), self._max_wait)
        if not granted:
            self._count(llm_rate_limited=1)
            raise RateLimited(
                f"the shared LLM token budget is committed {wait:.0f} s ahead, more than the "
                f"{self._max_wait:g} s a call may wait (MEMORYOS_LLM_RATE_LIMIT_MAX_WAIT); the work is retried "
                "later. Raise MEMORYOS_LLM_TOKENS_PER_MINUTE if the provider's quota allows"
            )
        if wait > 0:
            self._count(llm_rate_waits=1, llm_rate_wait_ms=math.ceil(wait * 1000))
            if wait >= 1:
                log.info("waiting %.1f s for the shared LLM token budget", wait)
            self._sleep(wait)
        return wait

    def charge(self, tokens: int) -> None:
        """Records tokens spent (or, negative, a reservation not used) without waiting."""
        if tokens:
            self._run(tokens, -1)

    def _run(self, tokens: int, max_wait: float) -> tuple[bool, float]:
        granted, wait = self._script(keys=[self._key], args=[tokens, repr(self._interval), BURST_SECONDS, max_wait])
        return bool(int(granted)), float(wait)

    def _count(self, **counters: int) -> None:
        if self._stats_key:
            count(self._redis, self._stats_key, **counters)


def budget_retry_after(max_wait: float) -> float:
    """When work refused by the budget comes back: after the longest wait a call accepts (at least 1 s,
    so a max_wait of 0 never spins)."""
    return max(max_wait, 1.0)

"""What a retrieval records after its answer is built: segment visits, one coalesced heat refresh,
and the deployment's retrieval counters; all off the request path, none able to fail the answer."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import redis

from memoryos_workers.counters import count, latency_bucket
from memoryos_workers.memory.segment_stats import HeatRefresh, SegmentStats
from producers.wire.keys import Sharded, UserKeys

log = logging.getLogger("memoryos.retrieval")

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def background() -> ThreadPoolExecutor:
    """One thread for fire-and-forget work, so a slow broker never shows in retrieval latency."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memoryos-heat-kick")
        return _executor


def settle(timeout: float = 10.0) -> None:
    """Wait until the bookkeeping queued so far is done (one thread, first in first out)."""
    background().submit(lambda: None).result(timeout)


class Bookkeeping:
    def __init__(self, client: redis.Redis, stats_key: Sharded, stats: SegmentStats, refresh: HeatRefresh) -> None:
        self.redis = client
        self.stats_key = stats_key
        self.stats = stats
        self.refresh = refresh

    def visits(self, user_id: str, keys: UserKeys, segment_ids: Sequence[str]) -> None:
        """N_visit and last access of the segments the answer drew on, plus one coalesced refresh_heat,
        recorded on the background thread: the answer never waits for a Redis round trip it does not need."""
        if segment_ids:
            background().submit(self._visits, user_id, keys, list(segment_ids))

    def _visits(self, user_id: str, keys: UserKeys, segment_ids: list[str]) -> None:
        """A Redis hiccup here must not fail anything: the answer is long gone."""
        try:
            claimed = self.stats.record_visits(keys, segment_ids, self.refresh.ttl_ms)
        except redis.RedisError as exc:
            log.warning("could not record segment visits of user %s: %s", user_id, exc)
            return
        if claimed:
            self.refresh.send_claimed(user_id, keys)

    def timed(self, total_ms: float) -> None:
        background().submit(self._count, total_ms)

    def _count(self, total_ms: float) -> None:
        """Retrievals and a latency histogram in the deployment's counters."""
        try:
            count(self.redis, self.stats_key, retrievals=1, retrieval_ms=math.ceil(total_ms),
                  **{latency_bucket(total_ms): 1})
        except redis.RedisError as exc:  # counters are best effort
            log.debug("could not count a retrieval: %s", exc)

"""Deployment-wide counters in one Redis hash (LLM calls and tokens, fallbacks, dead letters, ...),
read by `memoryos stats` and the benchmarks; a metrics endpoint can expose the same hash."""

from __future__ import annotations

import redis


def count(client: redis.Redis, stats_key: str, **counters: int) -> None:
    pipe = client.pipeline(transaction=False)
    for name, value in counters.items():
        if value:
            pipe.hincrby(stats_key, name, value)
    pipe.execute()


LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 1000)


def latency_bucket(ms: float) -> str:
    """The histogram counter a retrieval of `ms` falls in (Prometheus-style upper bounds, not cumulative)."""
    for bound in LATENCY_BUCKETS_MS:
        if ms <= bound:
            return f"retrieval_ms_le_{bound}"
    return "retrieval_ms_le_inf"

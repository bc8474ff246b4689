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

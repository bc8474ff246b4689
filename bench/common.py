"""Shared helpers: a private key prefix per run, percentiles, and cleanup of only what we created."""

from __future__ import annotations

import os
import statistics
import uuid
from collections.abc import Sequence

import redis

from schemas.settings import Settings


def bench_settings(**overrides: object) -> Settings:
    prefix = f"mosbench-{uuid.uuid4().hex[:8]}"
    return Settings(key_prefix=prefix, **overrides)  # type: ignore[arg-type]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values_s: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(values_s, 50) * 1000,
        "p99_ms": percentile(values_s, 99) * 1000,
        "mean_ms": statistics.fmean(values_s) * 1000,
    }


def cleanup(client: redis.Redis, prefix: str) -> int:
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    return len(keys)


def reproduce(command: str) -> str:
    return f"reproduce: {command}  (Redis: {os.environ.get('MEMORYOS_REDIS_URL', 'redis://localhost:6379/0')})"

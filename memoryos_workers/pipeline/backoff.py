"""Retry delays for work scheduled on the batch record (not Celery countdowns)."""

from __future__ import annotations

import random


def retry_delay(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter (AWS style): uniform in [0, min(cap, base * 2**(attempt-1))].

    Full jitter spreads the retries of many batches that failed together (an LLM outage), so they
    do not come back in one wave.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    ceiling = min(cap, base * (2 ** min(attempt - 1, 62)))
    return (rng or random).uniform(0, ceiling)

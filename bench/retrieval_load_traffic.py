"""Retrieval under load, the load (bench/retrieval_load.py): other users' turns published at a set rate, each
publish timed, to users whose short-term list is already full, so every turn is a page to ingest."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from typing import Any


class _Load(threading.Thread):
    """Publishes turns at `rate` turns/s, one publish per turn, timing each: `block` turns to one user, then
    the next user's (round-robin), so every `block` turns complete a batch whatever the rate and the number
    of users (spread one turn per user in turn, a slow load left every user short of a batch: no ingestion)."""

    def __init__(self, publisher: Any, users: Sequence[str], rate: float, rng: random.Random, block: int = 10,
                 ) -> None:
        super().__init__(name="bench-load", daemon=True)
        self.publisher, self.users, self.rate, self.rng, self.block = publisher, list(users), rate, rng, block
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.published: dict[str, int] = dict.fromkeys(self.users, 0)
        self.errors: list[str] = []

    def run(self) -> None:
        from .retrieval import _turn

        started, sent = time.monotonic(), 0
        while not self.stop.is_set():
            due = int((time.monotonic() - started) * self.rate)
            while sent < due and not self.stop.is_set():
                user = self.users[(sent // self.block) % len(self.users)]
                text, reply = _turn(self.rng)
                t0 = time.perf_counter()
                try:
                    self.publisher.publish({"user_id": user, "user_input": text, "agent_response": reply})
                    self.published[user] += 1
                except Exception as exc:  # noqa: BLE001 - counted and shown, the load goes on
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                self.latencies.append(time.perf_counter() - t0)
                sent += 1
            self.stop.wait(0.005)


def _fresh_users(rt: Any, prefix: str, n: int, rng: random.Random) -> list[str]:
    """Users whose short-term list is full already (no batch yet), so each further turn is a page to ingest."""
    from .retrieval import _turn

    users = [f"{prefix}-{i}" for i in range(n)]
    turns = [{"user_id": u, **dict(zip(("user_input", "agent_response"), _turn(rng), strict=True))}
             for u in users for _ in range(rt.settings.short_term_capacity)]
    rt.publisher.publish_many(turns)
    return users

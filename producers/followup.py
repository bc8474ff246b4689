"""The second half of a publish, retried off the caller's thread when it failed.

A publish is two round trips: the pipelined scripts that store the turns (and cut batches), then the
sweep-index update and the promote task for users whose batch is ready. When Redis blips between the
two, the turns are safe in Redis but nobody is told, and the beat sweep would find them only at the
index entry written with the turns (promotion_max_wait later). This retries the kick with backoff for
a while, so a blip of a few seconds delays promotion by about as much. Kept in memory: if the process
dies too, the sweep bound still holds. (A send refused by the broker alone needs none of this: the
index update went through, and the sweep re-sends at kick_stale_after.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

import redis
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_delay, wait_random_exponential

log = logging.getLogger("memoryos.producers")

Kick = Callable[[Sequence[str]], None]  # raises RedisError while Redis is away


class KickFollowUp:
    def __init__(self, kick: Kick, give_up_after: float, max_backoff: float = 5.0) -> None:
        self._kick = kick
        self.give_up_after = give_up_after
        self.max_backoff = max_backoff
        self._users: set[str] = set()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, users: Iterable[str]) -> None:
        with self._cond:
            self._users.update(users)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="memoryos-kick-followup", daemon=True)
                self._thread.start()
            self._cond.notify()

    def pending(self) -> set[str]:
        with self._cond:
            return set(self._users)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._users:
                    self._cond.wait()
                users = sorted(self._users)
            self._retry(users)
            with self._cond:
                self._users.difference_update(users)  # a kick drains everything of a user, later turns too

    def _retry(self, users: list[str]) -> None:
        retrying = Retrying(
            wait=wait_random_exponential(multiplier=0.1, max=self.max_backoff),  # full jitter, as everywhere
            stop=stop_after_delay(self.give_up_after),
            retry=retry_if_exception_type(redis.RedisError),
        )
        try:
            for attempt in retrying:
                with attempt:
                    self._kick(users)
            log.info("promote kick re-sent for %d user(s) after a failed publish follow-up", len(users))
        except RetryError:
            log.warning("gave up re-sending the promote kick for %d user(s) after %g s; the beat sweep "
                        "will find their batches", len(users), self.give_up_after)

    def wait_empty(self, timeout: float) -> bool:
        """For tests and shutdown: True once nothing is left to re-send."""
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

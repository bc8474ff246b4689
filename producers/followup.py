"""The second half of a publish, off the caller's thread: telling workers about a batch that is ready.

A publish returns once Redis holds its turns: one pipelined round trip. When it also cut a batch and
claimed the user's kick, someone must index the user for the sweep at the time a lost kick goes stale
(one more round trip) and send the promote task (a broker message, about as long again as the whole
publish). Done by the caller, that cost sat in the publish of every turn that cut a batch: one turn in
MEMORYOS_PROMOTION_BATCH_SIZE of each user while the workers keep up, so in the p90. Here a thread does
it, within milliseconds, and retries with backoff while Redis is away, so a blip of a few seconds delays
promotion by about as much.

Kept in memory. If the process dies before a kick went out, its batch waits for the beat sweep, which
finds it through the index entry written with the turns (promotion_max_wait later): nothing is lost,
only later. At exit, kicks still queued get EXIT_GRACE seconds to go out. (A send refused by the broker
alone needs none of this: the index update went through, and the sweep re-sends at kick_stale_after.)
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence

import redis
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_delay, wait_random_exponential

log = logging.getLogger("memoryos.producers")

# Sends the kicks of these users, each in the trace context its publish carried (a W3C carrier, empty with
# tracing off); raises RedisError while Redis is away.
Kick = Callable[[Sequence[str], Mapping[str, Mapping[str, str]]], None]

EXIT_GRACE = 2.0  # seconds, for all follow-ups of the process together
_live: weakref.WeakSet[KickFollowUp] = weakref.WeakSet()


class KickFollowUp:
    def __init__(self, kick: Kick, give_up_after: float, max_backoff: float = 5.0) -> None:
        self._kick = kick
        self.give_up_after = give_up_after
        self.max_backoff = max_backoff
        self._users: set[str] = set()  # waiting for the thread
        self._traces: dict[str, Mapping[str, str]] = {}  # the trace context of a waiting user's publish
        self._sending: set[str] = set()  # taken by the thread, not yet sent
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        _live.add(self)

    def add(self, users: Iterable[str], trace: Mapping[str, str] | None = None) -> None:
        """`trace`: the publish's trace context (producers.tracing.task_headers), so the promote task it
        causes joins the publish's trace although another thread sends it."""
        with self._cond:
            users = list(users)
            self._users.update(users)
            if trace:
                self._traces.update(dict.fromkeys(users, trace))
            if self._thread is None or not self._thread.is_alive():  # also the first add after a fork
                self._thread = threading.Thread(target=self._run, name="memoryos-kick-followup", daemon=True)
                self._thread.start()
            self._cond.notify()

    def pending(self) -> set[str]:
        """Users whose kick has not gone out yet (queued or being sent)."""
        with self._cond:
            return self._users | self._sending

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._users:
                    self._cond.wait()
                # Taken, not copied: a user added while this batch is sent is kicked again afterwards,
                # since their new batch may have been cut after the task below was read.
                users = sorted(self._users)
                traces = {u: self._traces.pop(u) for u in users if u in self._traces}
                self._users.clear()
                self._sending = set(users)
            try:
                self._retry(users, traces)
            finally:
                with self._cond:
                    self._sending = set()

    def _retry(self, users: list[str], traces: Mapping[str, Mapping[str, str]]) -> None:
        retrying = Retrying(
            wait=wait_random_exponential(multiplier=0.1, max=self.max_backoff),  # full jitter, as everywhere
            stop=stop_after_delay(self.give_up_after),
            retry=retry_if_exception_type(redis.RedisError),
        )
        try:
            for attempt in retrying:
                with attempt:
                    if attempt.retry_state.attempt_number == 2:
                        log.warning("Redis failed before the promote kick of %d user(s); retrying it in the "
                                    "background", len(users))
                    self._kick(users, traces)
            if retrying.statistics.get("attempt_number", 1) > 1:
                log.info("promote kick sent for %d user(s) after Redis came back", len(users))
        except RetryError:
            log.warning("gave up re-sending the promote kick for %d user(s) after %g s; the beat sweep "
                        "will find their batches", len(users), self.give_up_after)

    def wait_empty(self, timeout: float) -> bool:
        """For tests and shutdown: True once nothing is left to send."""
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True


@atexit.register
def _send_before_exit() -> None:
    deadline = time.monotonic() + EXIT_GRACE
    for followup in list(_live):
        followup.wait_empty(max(0.0, deadline - time.monotonic()))

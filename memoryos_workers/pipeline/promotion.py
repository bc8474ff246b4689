"""The promote task's work: drain one user's pending batches, oldest first, under the user's lock.

A batch leaves Redis only after its pages are in the vector store, and only through a fenced
script, so a turn is always in short-term, in a pending batch, or in the store (briefly in both,
which readers dedupe by turn_id).
"""

from __future__ import annotations

import logging
import time

import redis

from memoryos_workers.counters import count
from memoryos_workers.llm.base import LLMRateLimited
from memoryos_workers.llm.token_budget import budget_retry_after
from memoryos_workers.memory.pages import PageStore
from memoryos_workers.memory.segment_stats import HeatRefresh
from memoryos_workers.pipeline.backoff import retry_delay
from memoryos_workers.pipeline.batch_records import BatchRecords, LockLost
from memoryos_workers.pipeline.locks import UserLock
from memoryos_workers.pipeline.mid_term import MidTerm
from producers.pending import PendingWork
from producers.tracing import traced
from producers.wire.keys import Keys, UserKeys
from producers.wire.scripts import Scripts
from producers.wire.state import Batch, read_batch
from schemas.settings import Settings

log = logging.getLogger("memoryos.promotion")

__all__ = ["LockLost", "Promoter"]


class Promoter:
    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        keys: Keys,
        scripts: Scripts,
        pending: PendingWork,
        pages: PageStore,
        mid_term: MidTerm,
        refresh: HeatRefresh,
    ) -> None:
        self.settings = settings
        self.redis = client
        self.keys = keys
        self.scripts = scripts
        self.pending = pending
        self.pages = pages
        self.mid_term = mid_term
        self.refresh = refresh

    @traced("memoryos.promote", lambda self, user_id: {"memoryos.user_id": user_id},
            lambda done: {"memoryos.batches": done})
    def run(self, user_id: str) -> int:
        """Returns the number of batches finished. A duplicate task finds the lock held and leaves.

        At most `promotion_drain_batches` batches per task: then the user goes back to the end of the
        queue (PendingWork.requeue), so a user whose turns keep coming shares the worker threads with
        everyone else instead of holding one until their backlog is empty."""
        keys = self.keys.user(user_id)
        budget = self.settings.promotion_drain_batches
        done = 0
        while True:
            lock = UserLock(self.redis, keys, self.settings.lock_ttl)
            if not lock.acquire():
                return done
            epoch = self.redis.get(keys.epoch)
            try:
                # Cleared before draining: a batch created from now on sets it again, and we see it below.
                self.redis.delete(keys.kick)
                drained = self._drain(user_id, keys, lock, epoch, budget - done)
                done += drained
                if drained:
                    # Asked while the lock is held, so wait_idle never sees a gap before persona work.
                    self.refresh.request(user_id, keys)
            except LockLost:
                log.warning("lock lost while promoting user %s; the new holder continues", user_id)
                return done
            finally:
                lock.release()
            if done >= budget and self.redis.llen(keys.batches):
                self.pending.requeue(user_id)  # released first, so the next task can take the lock
                count(self.redis, self.keys.stats, promote_yields=1)
                return done
            if not (self.redis.exists(keys.kick) and self.redis.llen(keys.batches)):
                break
        self.pending.check(user_id)  # schedules retries and anything left for the sweep
        return done

    def _drain(self, user_id: str, keys: UserKeys, lock: UserLock, epoch: str | None, limit: int) -> int:
        done = 0
        while done < limit:
            if lock.lost or self.redis.get(keys.epoch) != epoch:
                raise LockLost()  # taken over, or the user was forgotten: write nothing more
            batch_id = self.redis.lindex(keys.batches, 0)
            batch = read_batch(self.redis, keys, batch_id) if batch_id else None
            if batch is None or batch.not_before > time.time():
                return done
            if not self._process(user_id, keys, lock, batch):
                return done
            done += 1
        return done

    @traced("memoryos.promote_batch", lambda self, user_id, keys, lock, batch: {
        "memoryos.user_id": user_id, "memoryos.batch_id": batch.batch_id, "memoryos.pages": len(batch.pages),
        "memoryos.batch_state": batch.state})
    def _process(self, user_id: str, keys: UserKeys, lock: UserLock, batch: Batch) -> bool:
        """True when the batch is finished (or parked as dead) and the next one may go."""
        records = BatchRecords(self.scripts, keys, lock.token, self.pages)
        try:
            records.store_pages(batch)
            self.mid_term.segment(user_id, keys, batch, records)
        except LockLost:
            raise
        except LLMRateLimited as exc:
            # Not an attempt that failed: waiting for the shared budget must never dead-letter a batch.
            wait = budget_retry_after(self.settings.llm_rate_limit_max_wait)
            records.record(batch.batch_id, not_before=repr(time.time() + wait),
                           error=f"waiting for the LLM token budget: {exc}"[:2000])
            log.warning("batch %s of user %s waits %.0f s for the LLM token budget", batch.batch_id, user_id, wait)
            return False
        except Exception as exc:  # noqa: BLE001 - store and embedding errors are retried, then parked
            log.exception("batch %s of user %s failed", batch.batch_id, user_id)
            return self._failed(user_id, records, batch, exc)
        records.done(batch.batch_id)
        count(self.redis, self.keys.stats, pages_promoted=len(batch.pages))  # the per-100-turns denominator
        log.info("promoted batch %s of user %s (%d pages)", batch.batch_id, user_id, len(batch.pages))
        return True

    def _failed(self, user_id: str, records: BatchRecords, batch: Batch, exc: Exception) -> bool:
        s = self.settings
        now = time.time()
        delay = retry_delay(batch.attempts + 1, base=s.retry_backoff_base, cap=s.retry_backoff_max)
        error = f"{type(exc).__name__}: {exc}"[:2000]
        attempts, outcome = records.failed(batch.batch_id, error, now + delay, s.max_attempts, now)
        if outcome == "dead":
            count(self.redis, self.keys.stats, batch_dead_letters=1)
            self.redis.zadd(self.keys.dead_index, {user_id: now})
            log.error("batch %s of user %s dead-lettered after %s attempts: %s", batch.batch_id, user_id, attempts,
                      error)
            return True
        count(self.redis, self.keys.stats, batch_retries=1)
        log.warning(
            "batch %s of user %s: attempt %s failed: %s; retry in %.1f s",
            batch.batch_id, user_id, attempts, error, delay,
        )
        return False

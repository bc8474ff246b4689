"""Pending work: finding users whose batches are due, re-sending lost tasks, waiting for idle.

The truth lives in Redis, not in the broker: a batch records its state, attempts and not_before
(and a persona extraction that failed, its persona_not_before),
and the sweep index (a sorted set of users by due time) says when to look again. Whoever looks
(the beat sweep, a worker after its drain, `wait_idle`) runs the same check script.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from producers.publish import Publisher, default_publisher
from producers.wire.contract import EXTRACT_PERSONA_TASK
from producers.wire.keys import Keys
from producers.wire.script_pipeline import ScriptPipeline
from producers.wire.scripts import Scripts
from schemas.turns import SCHEMA_VERSION


@dataclass(frozen=True)
class UserStatus:
    pending: int  # batches not yet done (dead letters excluded)
    buffered: int  # pages out of short-term, waiting to fill a batch
    locked: bool  # a worker holds the user's lock
    kicked: bool  # this check sent a promote task
    due: float | None  # when the sweep must look again; None = nothing to wait for
    persona_busy: bool = False  # heat refresh or persona extraction on its way, running or due for a retry
    persona_kicked: bool = False  # this check re-sent a persona extraction whose retry was due

    @property
    def idle(self) -> bool:
        return self.pending == 0 and not self.locked and not self.persona_busy


@dataclass(frozen=True)
class Backlog:
    """Ingestion's backlog over the whole deployment: what waits for a worker, and for how long."""

    users: int  # users with at least one pending batch
    batches: int  # pending batches (scheduled retries included, dead letters not)
    pages: int  # turns in those batches
    oldest_s: float  # seconds since the oldest of those turns was published; 0 with no backlog
    buffered: int  # turns out of short-term waiting to fill a batch (promoted after promotion_max_wait)


CHECK_HINT = "nothing was changed; pending work stays in Redis and is picked up once it is back"


class PendingWork:
    def __init__(self, publisher: Publisher) -> None:
        self.p = publisher
        s = publisher.settings
        # Longer than any due a publish or check can set, so a sweep mark never hides a real due.
        self.recheck = int(2 * max(s.promotion_max_wait, s.kick_stale_after) + 60)

    def check(self, user_id: str, *, force: bool = False, now: float | None = None) -> UserStatus:
        """Promote an overdue (or, with force, any) buffer and send the task if a batch is due."""
        s = self.p.settings
        now = time.time() if now is None else now
        with self.p.redis_errors(CHECK_HINT):
            pending, buffered, locked, kick, due, busy, persona_kick = self.p.scripts.check(
                keys=self.p.keys.user(user_id).script_keys(),
                args=[
                    repr(now), s.promotion_max_wait, s.kick_stale_after, int(force), s.promotion_batch_size,
                    int(s.kick_stale_after * 1000), SCHEMA_VERSION,
                ],
            )
            due_at = float(due) if due else None
            if due_at is not None:
                self.p.redis.zadd(self.p.keys.sweep.of(user_id), {user_id: due_at}, lt=True)
        if int(kick):
            self.p.sender.promote(user_id)
        if int(persona_kick):
            self.p.sender.send(EXTRACT_PERSONA_TASK, user_id)
        return UserStatus(int(pending), int(buffered), bool(int(locked)), bool(int(kick)), due_at, bool(int(busy)),
                          bool(int(persona_kick)))

    def backlog(self, *, now: float | None = None) -> Backlog:
        with self.p.redis_errors(CHECK_HINT):
            return read_backlog(self.p.redis, self.p.keys, self.p.scripts, now=now)

    def requeue(self, user_id: str) -> None:
        """A promote task finished its share of the user's batches and hands the rest back: the kick flag
        says a task is on its way (publishing sends none meanwhile), and the sweep index re-sends it
        should it be lost. Called after the lock is released, so the new task can take it."""
        ttl_ms = int(self.p.settings.kick_stale_after * 1000)
        with self.p.redis_errors(CHECK_HINT):
            self.p.redis.set(self.p.keys.user(user_id).kick, "1", px=ttl_ms)
            self.p.kick([user_id])

    def sweep(self, *, now: float | None = None, limit: int = 1000) -> int:
        """Look at every user whose due time has passed; returns how many tasks were sent."""
        now = time.time() if now is None else now
        sent = 0
        with self.p.redis_errors(CHECK_HINT):
            for user_id in due_users(self.p.redis, self.p.keys, now, limit):
                sweep_key = self.p.keys.sweep.of(user_id)
                mark = int(now) + self.recheck
                self.p.redis.zadd(sweep_key, {user_id: mark}, xx=True)
                status = self.check(user_id, now=now)
                sent += status.kicked + status.persona_kicked
                if status.due is None:
                    self.p.scripts.cas_remove(keys=[sweep_key], args=[user_id, mark])
        return sent

    def wait_idle(self, user_id: str, timeout: float = 60.0, flush: bool = False, poll: float = 0.05) -> None:
        """Block until the user has no pending batch and no work in flight; TimeoutError otherwise. With
        flush, the buffer is promoted and, once every batch is done, pages waiting for a coalesced persona
        extraction are extracted too."""
        deadline = time.monotonic() + timeout
        status = self.check(user_id, force=flush)
        while not status.idle:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"user {user_id!r} still has {status.pending} pending batch(es) after {timeout:g} s "
                    f"(worker lock held: {status.locked}, persona work: {status.persona_busy}); "
                    "is a worker running on the ingest and persona queues?"
                )
            time.sleep(poll)
            status = self.check(user_id, force=flush)


def wait_idle(user_id: str, timeout: float = 60.0, flush: bool = False) -> None:
    """Block until `user_id` has no pending batch and no work in flight (see PendingWork.wait_idle)."""
    PendingWork(default_publisher()).wait_idle(user_id, timeout=timeout, flush=flush)


def read_backlog(client: redis.Redis, keys: Keys, scripts: Scripts, *, now: float | None = None,
                 limit: int | None = None, chunk: int = 500) -> Backlog:
    """Read from the users of the sweep index, which holds every user with pending or buffered turns (each
    publish re-asserts it), most overdue first, at most `limit` of them: one script call per recently
    active user, never a SCAN."""
    now = time.time() if now is None else now
    users = batches = pages = buffered = 0
    oldest: float | None = None
    members = [user for user, _ in sweep_entries(client, keys, limit)]
    for start in range(0, len(members), chunk):
        pipe = ScriptPipeline(client)  # EVALSHA alone, one round trip per chunk
        for user_id in members[start : start + chunk]:
            pipe.run(scripts.backlog, keys.user(user_id).script_keys(), ())
        for buf, n_batches, n_pages, first in pipe.execute():
            buffered += int(buf)
            if int(n_batches):
                users, batches, pages = users + 1, batches + int(n_batches), pages + int(n_pages)
                if first:
                    oldest = float(first) if oldest is None else min(oldest, float(first))
    age = round(max(0.0, now - oldest), 1) if oldest is not None else 0.0
    return Backlog(users, batches, pages, age, buffered)


def due_users(client: redis.Redis, keys: Keys, now: float, limit: int) -> list[str]:
    """Users of the sweep index due by `now`, at most `limit` from each shard (one pipelined round trip)."""
    pipe = client.pipeline(transaction=False)
    for shard in keys.sweep.names:
        pipe.zrangebyscore(shard, "-inf", now, start=0, num=limit)
    return [user for users in pipe.execute() for user in users]


def sweep_entries(client: redis.Redis, keys: Keys, limit: int | None = None) -> list[tuple[str, float]]:
    """(user, due) of the sweep index, earliest due first, at most `limit`: the first `limit` of each shard
    merged (one pipelined round trip)."""
    pipe = client.pipeline(transaction=False)
    for shard in keys.sweep.names:
        pipe.zrange(shard, 0, -1 if limit is None else limit - 1, withscores=True)
    merged = sorted((entry for entries in pipe.execute() for entry in entries), key=lambda e: e[1])
    return [(str(user), float(due)) for user, due in (merged if limit is None else merged[:limit])]

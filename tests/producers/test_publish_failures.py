"""Failure paths around publishing: a broker that drops sends, a partial buffer nobody fills, Redis
down, no worker, a page store that keeps failing (dead letters), and the retry backoff.

Everything runs against the real Redis, each test under its own key prefix (below the run's PREFIX)
which it deletes afterwards. Broker failures come from a TaskSender whose `send` fails, or from a
real TaskSender pointed at a closed port; data always goes to the real Redis.
"""

from __future__ import annotations

import random
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from memoryos_workers.counters import read_counters
from producers.errors import RedisUnavailableError
from producers.pending import PendingWork, sweep_entries
from producers.publish import Publisher
from producers.sender import TaskSender
from producers.wire import state
from producers.wire.contract import PROMOTE_TASK
from schemas.settings import Settings
from tests.conftest import PREFIX

CAPACITY = 5
BATCH = 4


# -- helpers ------------------------------------------------------------------------------------


class FailingSender(TaskSender):
    """A broker that is down: every send fails (and is reported, never raised)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def send(self, task: str, *args: Any) -> bool:
        self.calls.append((task, args))
        self.failures += 1
        return False


class RecordingSender(TaskSender):
    """A broker that works, recording what was sent instead of queueing it."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.sent: list[tuple[str, tuple[Any, ...]]] = []

    def send(self, task: str, *args: Any) -> bool:
        self.sent.append((task, args))
        return True

    def promoted(self) -> list[str]:
        return [args[0] for task, args in self.sent if task == PROMOTE_TASK]


def closed_port() -> int:
    """A local port nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def make_settings(redis_client: redis.Redis, settings: Settings) -> Iterator[Any]:
    """Builds Settings under fresh private prefixes (`<PREFIX>-<tag>-<uuid>`) and deletes their keys."""
    prefixes: list[str] = []

    def make(tag: str, **overrides: Any) -> Settings:
        prefix = f"{PREFIX}-{tag}-{uuid.uuid4().hex[:8]}"
        prefixes.append(prefix)
        values: dict[str, Any] = {
            "redis_url": settings.redis_url,
            "key_prefix": prefix,
            "short_term_capacity": CAPACITY,
            "promotion_batch_size": BATCH,
        }
        values.update(overrides)
        return Settings(**values)

    yield make
    for prefix in prefixes:
        delete_prefix(redis_client, prefix)
        assert not list(redis_client.scan_iter(match=f"{prefix}*", count=1000))


def turns(user: str, n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"user_id": user, "user_input": f"q{i}", "agent_response": f"a{i}"} for i in range(start, start + n)]


def seqs(pages: list) -> list[int]:  # noqa: ANN001
    return [p.seq for p in pages]


def new_user(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}"


# -- 1. the broker send fails -------------------------------------------------------------------


def test_failed_send_keeps_batch_pending_and_check_and_sweep_resend(make_settings) -> None:  # noqa: ANN001
    s = make_settings("sendfail")
    failing = FailingSender(s)
    pub = Publisher(s, sender=failing)
    user, idle_user = new_user("sf"), new_user("sf-idle")
    n = CAPACITY + BATCH

    before = time.time()
    ids = [pub.publish(t) for t in turns(user, n)]  # never raises although every send fails
    ids += pub.publish_many(turns(idle_user, 2))  # short-term only: nothing will ever be pending
    assert len(ids) == n + 2 and len(set(ids)) == n + 2
    assert pub.followup.wait_empty(timeout=10), "the kick goes out from the background"
    assert failing.calls == [(PROMOTE_TASK, (user,))] and failing.failures == 1

    keys = pub.keys.user(user)
    batches = state.batches(pub.redis, keys)
    assert [b.state for b in batches] == ["pending"] and batches[0].attempts == 0
    assert seqs(batches[0].pages) == list(range(1, BATCH + 1))
    assert seqs(state.short_term(pub.redis, keys)) == list(range(BATCH + 1, n + 1))
    assert state.buffered(pub.redis, keys) == []
    stored_ids = [p.turn_id for p in batches[0].pages + state.short_term(pub.redis, keys)]
    assert stored_ids == ids[:n], "nothing lost, nothing doubled"
    # The publish indexed the user for the sweep at the time the lost kick goes stale.
    score = pub.redis.zscore(pub.keys.sweep.of(user), user)
    assert score is not None and before + s.kick_stale_after <= score <= time.time() + s.kick_stale_after

    # The broker is back; only the check (run by the sweep and wait_idle) can re-send.
    recording = RecordingSender(s)
    work = PendingWork(Publisher(s, sender=recording))
    status = work.check(user, now=time.time())
    assert (status.pending, status.buffered, status.kicked, status.locked) == (1, 0, False, False)
    assert recording.sent == [], "a kick younger than kick_stale_after must not be re-sent"
    kicked_at = float(state.batches(pub.redis, keys)[0].extra["kicked_at"])
    assert not work.check(user, now=kicked_at + s.kick_stale_after - 0.5).kicked
    assert recording.sent == []

    later = time.time() + s.kick_stale_after + 1
    status = work.check(user, now=later)
    assert status.kicked and status.pending == 1
    assert recording.sent == [(PROMOTE_TASK, (user,))]
    assert not work.check(user, now=later).kicked, "a fresh kick coalesces the next check"
    assert len(recording.sent) == 1

    # The sweep finds users through its index only, and only once they are due.
    assert work.sweep(now=time.time()) == 0
    assert recording.sent == [(PROMOTE_TASK, (user,))]
    due = {user for user, _ in sweep_entries(pub.redis, pub.keys)}
    assert {user, idle_user} <= due
    sweep_now = later + s.kick_stale_after + s.promotion_max_wait + 1
    assert work.sweep(now=sweep_now) == 1
    assert recording.promoted() == [user, user]
    assert pub.redis.zscore(pub.keys.sweep.of(idle_user), idle_user) is None, "nothing pending: removed from the index"
    score = pub.redis.zscore(pub.keys.sweep.of(user), user)
    assert score == pytest.approx(sweep_now + s.kick_stale_after), "pending work stays, due at its next kick"
    assert [b.batch_id for b in state.batches(pub.redis, keys)] == [batches[0].batch_id]
    # The idle user's turns are untouched by the sweep.
    assert seqs(state.short_term(pub.redis, pub.keys.user(idle_user))) == [1, 2]


def test_real_sender_with_unreachable_broker_does_not_fail_publish(make_settings) -> None:  # noqa: ANN001
    s = make_settings("deadbroker")
    broker_down = Settings(redis_url=f"redis://127.0.0.1:{closed_port()}/0", key_prefix=s.key_prefix)
    sender = TaskSender(broker_down)  # the real sender; only its broker is unreachable
    pub = Publisher(s, sender=sender)
    user = new_user("db")
    started = time.monotonic()
    ids = pub.publish_many(turns(user, CAPACITY + BATCH))
    assert time.monotonic() - started < 1, "the kick is sent from the background, never in the publish"
    assert len(ids) == CAPACITY + BATCH
    assert pub.followup.wait_empty(timeout=30)
    assert sender.failures == 1
    keys = pub.keys.user(user)
    assert [seqs(b.pages) for b in state.batches(pub.redis, keys)] == [list(range(1, BATCH + 1))]
    assert pub.redis.zscore(pub.keys.sweep.of(user), user) is not None


# -- 2. a partial buffer ------------------------------------------------------------------------


def test_partial_buffer_promoted_after_max_wait_or_when_forced(make_settings) -> None:  # noqa: ANN001
    s = make_settings("partial", promotion_max_wait=120.0)
    recording = RecordingSender(s)
    pub = Publisher(s, sender=recording)
    work = PendingWork(pub)
    waiting, forced = new_user("pw"), new_user("pf")
    extra = BATCH - 1
    before = time.time()
    for user in (waiting, forced):
        pub.publish_many(turns(user, CAPACITY + extra))
    after = time.time()
    assert pub.followup.wait_empty(timeout=10)
    assert recording.sent == []

    keys = pub.keys.user(waiting)
    assert seqs(state.buffered(pub.redis, keys)) == list(range(1, extra + 1))
    assert state.batches(pub.redis, keys) == []

    # Not before promotion_max_wait.
    status = work.check(waiting, now=before + s.promotion_max_wait - 1)
    assert (status.pending, status.buffered, status.kicked) == (0, extra, False)
    assert status.due is not None and before + s.promotion_max_wait <= status.due <= after + s.promotion_max_wait
    assert state.batches(pub.redis, keys) == [] and recording.sent == []

    # After it: one batch with the partial buffer, and a kick.
    status = work.check(waiting, now=after + s.promotion_max_wait + 1)
    assert (status.pending, status.buffered, status.kicked) == (1, 0, True)
    batches = state.batches(pub.redis, keys)
    assert [seqs(b.pages) for b in batches] == [list(range(1, extra + 1))]
    assert batches[0].state == "pending" and int(batches[0].extra["count"]) == extra
    assert state.buffered(pub.redis, keys) == []
    assert seqs(state.short_term(pub.redis, keys)) == list(range(extra + 1, CAPACITY + extra + 1))
    assert recording.promoted() == [waiting]

    # force=True promotes at once.
    fkeys = pub.keys.user(forced)
    status = work.check(forced, force=True, now=time.time())
    assert (status.pending, status.buffered, status.kicked) == (1, 0, True)
    assert [seqs(b.pages) for b in state.batches(pub.redis, fkeys)] == [list(range(1, extra + 1))]
    assert recording.promoted() == [waiting, forced]


# -- 3. Redis down ------------------------------------------------------------------------------


def test_redis_down_raises_helpful_error(make_settings) -> None:  # noqa: ANN001
    port = closed_port()
    url = f"redis://127.0.0.1:{port}/0"
    s = make_settings("down", redis_url=url)
    pub = Publisher(s, sender=RecordingSender(s))
    started = time.monotonic()
    with pytest.raises(RedisUnavailableError) as info:
        pub.publish({"user_id": "u-down", "turn_id": "t-1", "user_input": "hi", "agent_response": "hello"})
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert url in message
    assert "may not be stored" in message and "same turn_id" in message
    assert isinstance(info.value, ConnectionError)
    assert isinstance(info.value.__cause__, redis.ConnectionError)
    # The pending-work check reports the same error type.
    with pytest.raises(RedisUnavailableError):
        PendingWork(pub).check("u-down")


def test_redis_down_error_never_shows_the_password(make_settings) -> None:  # noqa: ANN001
    port = closed_port()
    s = make_settings("downpw", redis_url=f"redis://:s3cret@127.0.0.1:{port}/0")
    pub = Publisher(s, sender=RecordingSender(s))
    with pytest.raises(RedisUnavailableError) as info:
        pub.publish_many(turns("u-down", 2))
    message = str(info.value)
    assert "s3cret" not in message and "s3cret" not in repr(info.value)
    assert "s3cret" not in str(info.value.__cause__)
    assert f"redis://***@127.0.0.1:{port}/0" in message
    assert "same turn_id" in message


# -- 4. no worker -------------------------------------------------------------------------------


def test_wait_idle_times_out_without_worker(make_settings) -> None:  # noqa: ANN001
    s = make_settings("idle")
    recording = RecordingSender(s)
    pub = Publisher(s, sender=recording)
    user = new_user("wi")
    pub.publish_many(turns(user, CAPACITY + BATCH))
    assert pub.followup.wait_empty(timeout=10)
    assert recording.promoted() == [user]  # sent, but nobody consumes this prefix's queues
    started = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        PendingWork(pub).wait_idle(user, timeout=0.5)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 3
    message = str(info.value)
    assert repr(user) in message
    assert "1 pending batch" in message
    assert "worker" in message and "ingest" in message
    assert "lock held: False" in message
    # Waiting changed nothing: the batch is still pending, the kick was not re-sent early.
    assert len(state.batches(pub.redis, pub.keys.user(user))) == 1
    assert recording.promoted() == [user]


# -- 5. dead letters ----------------------------------------------------------------------------


class FlakyPages:
    """Stands in for the runtime's PageStore: fails the first `failures` upserts, then stores."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[str] = []
        self.stored: dict[str, list[int]] = {}

    def upsert(self, pages: list, batch_id: str) -> None:  # noqa: ANN001
        self.calls.append(batch_id)
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError(f"vector store unavailable (batch {batch_id})")
        self.stored[batch_id] = [p.seq for p in pages]


class PassingMidTerm:
    """Stands in for the runtime's mid-term step (if this version of Promoter has one): succeeds, so
    only the page store decides the batch's fate and no model, store or LLM is opened."""

    def __init__(self) -> None:
        self.batches: list[str] = []

    def segment(self, user_id: str, keys: Any, batch: Any, *args: Any, **kwargs: Any) -> bool:
        self.batches.append(batch.batch_id)
        return True


def test_failing_store_retries_then_dead_letters_and_the_queue_moves_on(make_settings) -> None:  # noqa: ANN001
    from memoryos_workers.runtime import Runtime

    s = make_settings("dead", max_attempts=2, retry_backoff_base=0.01, retry_backoff_max=0.02)
    rt = Runtime(s)
    recording = RecordingSender(s)
    rt._parts["publisher"] = Publisher(s, sender=recording)
    pages = FlakyPages(failures=s.max_attempts)
    rt._parts["pages"] = pages
    rt._parts["mid_term"] = mid_term = PassingMidTerm()
    user = new_user("dl")
    keys = rt.keys.user(user)
    n = CAPACITY + 2 * BATCH
    rt.publisher.publish_many(turns(user, n))
    first, second = (b.batch_id for b in state.batches(rt.redis, keys))

    # First failure: the batch stays at the head, pending, with the attempt, error and retry time.
    t0 = time.time()
    assert rt.promoter.run(user) == 0
    t1 = time.time()
    assert pages.calls == [first], "the batch behind a failing one waits (FIFO per user)"
    batches = state.batches(rt.redis, keys)
    assert [b.batch_id for b in batches] == [first, second]
    head = batches[0]
    assert head.state == "pending" and head.attempts == 1
    assert head.error == f"RuntimeError: vector store unavailable (batch {first})"
    assert t0 < head.not_before <= t1 + s.retry_backoff_max
    assert state.batches(rt.redis, keys, dead=True) == []
    assert rt.redis.zscore(rt.keys.dead_index, user) is None
    assert not rt.redis.exists(keys.lock)
    # The retry is scheduled through the sweep index, no later than the retry time.
    assert rt.redis.zscore(rt.keys.sweep.of(user), user) <= max(head.not_before, t1 + s.kick_stale_after)

    # Second failure reaches max_attempts: dead-lettered; the store works again for the next batch.
    time.sleep(max(0.0, head.not_before - time.time()) + 0.01)
    assert rt.promoter.run(user) == 2
    assert pages.calls == [first, first, second]
    assert pages.stored == {second: list(range(BATCH + 1, 2 * BATCH + 1))}
    assert mid_term.batches in ([], [second]), "only a stored batch goes on to the mid-term step"
    assert state.batches(rt.redis, keys) == []
    dead = state.batches(rt.redis, keys, dead=True)
    assert [b.batch_id for b in dead] == [first]
    assert dead[0].state == "dead" and dead[0].attempts == s.max_attempts
    assert dead[0].error == f"RuntimeError: vector store unavailable (batch {first})"
    assert seqs(dead[0].pages) == list(range(1, BATCH + 1)), "dead-lettered pages stay readable"
    assert [p.user_input for p in dead[0].pages] == [f"q{i}" for i in range(BATCH)]
    assert float(dead[0].extra["dead_at"]) >= t1
    assert rt.redis.lrange(keys.dead, 0, -1) == [first]
    assert rt.redis.zscore(rt.keys.dead_index, user) is not None
    counters = read_counters(rt.redis, rt.keys)
    assert (counters["batch_retries"], counters["batch_dead_letters"]) == (1, 1), counters
    assert not rt.redis.exists(keys.batch(second)), "a finished batch leaves Redis"
    assert seqs(state.short_term(rt.redis, keys)) == list(range(2 * BATCH + 1, n + 1))
    assert not rt.redis.exists(keys.lock)

    # Dead letters do not count as pending: the user is idle.
    status = rt.pending.check(user)
    # persona_busy may be set: the finished promotion asked for a heat refresh that no worker consumes here.
    assert status.pending == 0 and not status.locked and status.buffered == 0
    rt.redis.delete(keys.heat_kick)  # the heat refresh it requested goes to a recording sender, not a worker
    rt.pending.wait_idle(user, timeout=1)
    rt.close()


# -- 6. backoff ---------------------------------------------------------------------------------


def test_retry_delay_bounds_and_errors() -> None:
    from memoryos_workers.pipeline.backoff import retry_delay

    rng = random.Random(1234)
    for base, cap in [(1.0, 300.0), (0.01, 0.02), (0.5, 0.5), (2.0, 1.0)]:
        for attempt in range(1, 80):
            ceiling = min(cap, base * 2 ** (attempt - 1))
            for _ in range(20):
                d = retry_delay(attempt, base=base, cap=cap, rng=rng)
                assert 0 <= d <= ceiling, (attempt, base, cap, d)
    # Full jitter: the delays actually spread over the range.
    delays = [retry_delay(10, base=1.0, cap=300.0, rng=rng) for _ in range(500)]
    assert min(delays) < 30 and max(delays) > 270
    # A huge attempt number neither overflows nor exceeds the cap.
    assert 0 <= retry_delay(10_000, base=1.0, cap=5.0, rng=rng) <= 5.0
    assert 0 <= retry_delay(3, base=1.0, cap=300.0) <= 4.0  # the module-level rng
    for bad in (0, -1):
        with pytest.raises(ValueError, match="attempt counts from 1"):
            retry_delay(bad, base=1.0, cap=10.0)


def test_retry_delay_is_reproducible_with_a_seeded_rng() -> None:
    from memoryos_workers.pipeline.backoff import retry_delay

    def run(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [retry_delay(a, base=0.5, cap=60.0, rng=rng) for a in range(1, 30)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_redis_failing_after_the_turns_are_stored_delays_the_kick_only_briefly(make_settings) -> None:  # noqa: ANN001
    """Redis answers the publish pipeline, then fails the index update and the kick: the publish returns
    (its turns are stored) and the kick is re-sent from the background once Redis answers again,
    instead of waiting for the sweep at promotion_max_wait."""
    s = make_settings("followup")
    client = redis.Redis.from_url(s.redis_url, decode_responses=True)
    recording = RecordingSender(s)
    pub = Publisher(s, client, sender=recording)
    user = new_user("fu")
    real_zadd = client.zadd
    failures = [3]

    def flaky_zadd(*args: Any, **kwargs: Any) -> Any:
        if failures[0] > 0:
            failures[0] -= 1
            raise redis.ConnectionError("Connection reset by peer (test)")
        return real_zadd(*args, **kwargs)

    client.zadd = flaky_zadd  # only the follow-up's own call: the pipeline has its own zadd
    try:
        ids = pub.publish_many(turns(user, CAPACITY + BATCH))  # returns: the turns are stored
        assert len(ids) == CAPACITY + BATCH
        assert pub.followup.wait_empty(timeout=30)
        assert recording.promoted() == [user], "the kick was re-sent once Redis answered"
        assert failures[0] == 0
        score = client.zscore(pub.keys.sweep.of(user), user)
        assert score is not None and score <= time.time() + s.kick_stale_after, "indexed at the stale time"
        assert [b.state for b in state.batches(client, pub.keys.user(user))] == ["pending"]
    finally:
        client.close()


def test_the_embedded_setup_sweeps_for_lost_kicks(celery_worker, runtime, monkeypatch) -> None:  # noqa: ANN001
    """No beat process runs beside an embedded worker: its own sweeper re-sends a lost promote."""
    from memoryos_workers.worker.embedded import EmbeddedWorker

    s = runtime.settings
    monkeypatch.setattr(s, "sweep_interval", 0.1)
    monkeypatch.setattr(s, "kick_stale_after", 0.5)
    user = new_user("embedded-sweep")
    lost = Publisher(s, runtime.redis, sender=FailingSender(s))
    cap, size = s.short_term_capacity, s.promotion_batch_size
    ids = lost.publish_many([{"user_id": user, "user_input": f"turn {i}", "agent_response": "ok"}
                             for i in range(cap + size)])
    assert lost.followup.wait_empty(timeout=10)
    assert lost.sender.calls == [(PROMOTE_TASK, (user,))], "the kick was lost"
    sweeper = EmbeddedWorker(runtime).start_sweeper()
    try:
        deadline = time.monotonic() + 30
        while runtime.pages.count(user) < size and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        sweeper.stop()
    stored = [p.payload["turn_id"] for p in runtime.pages.all_for_user(user)]
    assert stored == ids[:size]

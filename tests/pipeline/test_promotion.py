"""A promote task drains a bounded share of one user's batches, then hands the user back to the queue.

Driven in this thread with a private runtime (no worker consumes its queues), so the task a yield sends
stays in the broker's list where the test can see it.
"""

from __future__ import annotations

from memoryos_workers.counters import read_counters
from producers.wire import state
from producers.wire.contract import INGEST_QUEUE


def _turns(user_id: str, n: int) -> list[dict]:
    return [{"user_id": user_id, "user_input": f"I went hiking, day {i}", "agent_response": f"Nice {i}"}
            for i in range(n)]


def _queued_promotes(rt) -> int:  # noqa: ANN001
    return int(rt.redis.llen(f"{rt.keys.celery}{INGEST_QUEUE}"))


def test_a_drain_yields_after_its_share_and_requeues_the_user(private_runtime) -> None:  # noqa: ANN001
    rt = private_runtime(promotion_drain_batches=2, short_term_capacity=2, promotion_batch_size=2)
    user = "yielding-user"
    rt.publisher.publish_many(_turns(user, 2 + 5 * 2))  # five batches of two behind a short-term of two
    keys = rt.keys.user(user)
    assert rt.redis.llen(keys.batches) == 5
    assert rt.publisher.followup.wait_empty(timeout=10)  # the publish kick goes out from the background
    rt.redis.delete(f"{rt.keys.celery}{INGEST_QUEUE}")  # the publish kick; what follows is the yields'
    drained = []
    while rt.redis.llen(keys.batches):
        before = _queued_promotes(rt)
        drained.append(rt.promoter.run(user))
        left = rt.redis.llen(keys.batches)
        assert (_queued_promotes(rt) - before == 1) == (left > 0), "a yield re-sends the task, the last drain does not"
        assert rt.redis.exists(keys.lock) == 0, "a yielding drain holds no lock"
        if left:
            assert rt.redis.exists(keys.kick), "the task on its way is marked, so publishing sends no other"
    assert drained == [2, 2, 1]
    assert read_counters(rt.redis, rt.keys).get("promote_yields") == 2
    stored = sorted(h.payload["seq"] for h in rt.pages.all_for_user(user))
    assert stored + [p.seq for p in state.short_term(rt.redis, keys)] == list(range(1, 13)), "nothing lost or doubled"


def test_a_drain_within_its_share_does_not_yield(private_runtime) -> None:  # noqa: ANN001
    rt = private_runtime(promotion_drain_batches=3, short_term_capacity=2, promotion_batch_size=2)
    user = "short-user"
    rt.publisher.publish_many(_turns(user, 2 + 3 * 2))
    assert rt.publisher.followup.wait_empty(timeout=10)
    rt.redis.delete(f"{rt.keys.celery}{INGEST_QUEUE}")
    assert rt.promoter.run(user) == 3
    assert _queued_promotes(rt) == 0 and read_counters(rt.redis, rt.keys).get("promote_yields") is None

"""A worker process killed with SIGKILL in the middle of promotions loses no turn and doubles none.

The broker would hand the unacked message back only after its visibility timeout (an hour), so
recovery must come from the state in Redis: the lock expires, the pending batch stays at the head
of the user's queue, and the check that wait_idle and the beat sweep run re-sends the task.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from producers.publish import Publisher
from producers.wire import state
from schemas.settings import Settings
from tests.conftest import PREFIX
from tests.processes import WorkerProcess

pytestmark = pytest.mark.integration


def test_sigkill_mid_batch_loses_nothing(tmp_path: Path, redis_client) -> None:  # noqa: ANN001
    prefix = f"{PREFIX}-crash"
    env = {
        **os.environ,
        "MEMORYOS_KEY_PREFIX": prefix,
        "MEMORYOS_DATA_DIR": str(tmp_path / "data"),
        "MEMORYOS_LOCK_TTL": "3",
        "MEMORYOS_KICK_STALE_AFTER": "4",
        "MEMORYOS_SWEEP_INTERVAL": "1",
    }
    settings = Settings(key_prefix=prefix, data_dir=tmp_path / "data", lock_ttl=3, kick_stale_after=4, sweep_interval=1)
    publisher = Publisher(settings)
    users = [f"crash-user-{i}" for i in range(3)]
    per_user = 150
    worker = WorkerProcess("crash", env, tmp_path, concurrency=4).start()
    try:
        for user in users:
            publisher.publish_many(
                [
                    {"user_id": user, "user_input": f"{user} turn {i} about hiking", "agent_response": f"reply {i}"}
                    for i in range(per_user)
                ]
            )
        batches_total = sum(redis_client.llen(publisher.keys.user(u).batches) for u in users)
        assert batches_total >= 3 * (per_user - settings.short_term_capacity) // settings.promotion_batch_size - 3
        # Kill once the worker is well into the work but not done.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            left = sum(redis_client.llen(publisher.keys.user(u).batches) for u in users)
            if left <= batches_total * 0.6:
                break
            time.sleep(0.01)
        worker.kill()
        left_at_kill = sum(redis_client.llen(publisher.keys.user(u).batches) for u in users)
        assert 0 < left_at_kill < batches_total, "the kill should land mid-way through the promotions"

        worker.start()
        from producers.pending import PendingWork

        waiter = PendingWork(publisher)
        for user in users:
            waiter.wait_idle(user, timeout=120, flush=True)
    finally:
        worker.stop()

    from memoryos_workers.runtime import Runtime

    rt = Runtime(settings)
    try:
        for user in users:
            keys = publisher.keys.user(user)
            stored = [h.payload["seq"] for h in rt.pages.all_for_user(user)]
            stm = [p.seq for p in state.short_term(publisher.redis, keys)]
            assert stored + stm == list(range(1, per_user + 1)), f"{user}: lost or doubled turns"
            assert state.batches(publisher.redis, keys) == []
            assert state.batches(publisher.redis, keys, dead=True) == []
    finally:
        rt.close()
        for key in redis_client.scan_iter(match=f"{prefix}*", count=1000):
            redis_client.delete(key)

"""A worker process killed with SIGKILL in the middle of promotions loses no turn and doubles none.

The broker would hand the unacked message back only after its visibility timeout (an hour), so
recovery must come from the state in Redis: the lock expires, the pending batch stays at the head
of the user's queue, and the check that wait_idle and the beat sweep run re-sends the task.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from producers import state
from producers.publish import Publisher
from schemas.settings import Settings

from .conftest import PREFIX

pytestmark = pytest.mark.integration


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "celery", "-A", "memoryos_workers", "worker", "-P", "threads", "-c", "4",
        "-Q", "memoryos.ingest,memoryos.persona,memoryos.retrieval", "-l", "INFO",
        "--without-heartbeat", "--without-mingle", "--without-gossip", "-n", f"crash-{os.getpid()}@%h",
    ]
    already = log.read_text(errors="replace").count("memoryos worker ready") if log.exists() else 0
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if log.read_text(errors="replace").count("memoryos worker ready") > already:
            return proc
        if proc.poll() is not None:
            raise AssertionError(f"worker exited early:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"worker did not become ready:\n{log.read_text()[-3000:]}")


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
    log = tmp_path / "worker.log"
    users = [f"crash-user-{i}" for i in range(3)]
    per_user = 150
    worker = _start_worker(env, log)
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
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        left_at_kill = sum(redis_client.llen(publisher.keys.user(u).batches) for u in users)
        assert 0 < left_at_kill < batches_total, "the kill should land mid-way through the promotions"

        worker = _start_worker(env, log)
        from producers.pending import PendingWork

        waiter = PendingWork(publisher)
        for user in users:
            waiter.wait_idle(user, timeout=120, flush=True)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()

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

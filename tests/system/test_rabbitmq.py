"""Celery on RabbitMQ (MEMORYOS_BROKER_URL=amqp://...), memory on Redis: the same queues and routing as on
Redis, declared as quorum queues, every send confirmed, and a worker that rides out the loss of its broker
connection. RabbitMQ is the machine's (127.0.0.1:5672), in a virtual host created and deleted here;
skipped, saying why, when none answers.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
import redis

from memoryos_workers.counters import deployment_stats
from memoryos_workers.testing.rabbitmq import Vhost
from producers.broker import queue_depths
from producers.pending import PendingWork
from producers.publish import Publisher
from producers.wire.contract import ALL_QUEUES, PROMOTE_TASK, celery_config
from schemas.settings import Settings
from tests.conftest import PREFIX
from tests.processes import WorkerProcess
from tests.system.test_faults import wait_all_idle

pytestmark = pytest.mark.integration

KNOBS = {"lock_ttl": 3, "kick_stale_after": 4, "sweep_interval": 1}


def amqp_env(vhost: Vhost, redis_url: str, prefix: str, data_dir: Path) -> tuple[Settings, dict[str, str]]:
    settings = Settings(redis_url=redis_url, broker_url=vhost.url, key_prefix=prefix, data_dir=data_dir, **KNOBS)
    env = {
        **os.environ, "MEMORYOS_REDIS_URL": redis_url, "MEMORYOS_BROKER_URL": vhost.url,
        "MEMORYOS_KEY_PREFIX": prefix, "MEMORYOS_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1",
        **{f"MEMORYOS_{k.upper()}": str(v) for k, v in KNOBS.items()},
    }
    return settings, env


def test_amqp_configuration_both_sides_share(vhost: Vhost) -> None:
    config = celery_config(Settings(broker_url=vhost.url, key_prefix="x"))
    assert config["broker_url"] == vhost.url
    assert config["broker_transport_options"]["confirm_publish"] is True
    assert [q.name for q in config["task_queues"]] == list(ALL_QUEUES)
    assert all(q.queue_arguments == {"x-queue-type": "quorum"} for q in config["task_queues"])
    assert all(q.routing_key == q.name and q.exchange.name == q.name for q in config["task_queues"])
    default = celery_config(Settings(key_prefix="x"))
    assert default["broker_url"] == default["result_backend"] == Settings().redis_url, "unset: memory Redis, as before"


def test_worker_on_rabbitmq_ingests_and_rides_out_a_lost_connection(
    vhost: Vhost, tmp_path: Path, settings: Settings, redis_client: redis.Redis
) -> None:
    prefix = f"{PREFIX}-amqp-{uuid.uuid4().hex[:6]}"
    deploy, env = amqp_env(vhost, settings.redis_url, prefix, tmp_path / "data")
    publisher = Publisher(deploy)
    users = [f"amqp-user-{i}" for i in range(3)]
    worker = WorkerProcess("amqp", env, tmp_path, concurrency=4)
    try:
        worker.start()
        pid = worker.proc.pid
        queues = vhost.queues()
        assert {q: queues[q]["type"] for q in ALL_QUEUES} == dict.fromkeys(ALL_QUEUES, "quorum"), queues
        assert not any(redis_client.keys(f"{prefix}:celery:*")), "no Celery message went through memory Redis"

        def publish(round_: int) -> None:
            for user in users:
                publisher.publish_many([{"user_id": user, "turn_id": f"{user}-{round_}-{i}",
                                         "user_input": f"round {round_} turn {i}: I grow tomatoes",
                                         "agent_response": "nice"} for i in range(25)])

        publish(0)
        wait_all_idle(PendingWork(publisher), users, timeout=120, flush=True)
        stats = deployment_stats(publisher)
        assert stats["queue_memoryos.ingest"] == 0 and stats["pending_batches"] == 0, stats

        assert vhost.close_connections() >= 1, "the worker's broker connections were not found"
        time.sleep(1.0)
        publish(1)  # the producer's connection was closed too: it reconnects on its own
        wait_all_idle(PendingWork(publisher), users, timeout=120, flush=True)
        log = worker.log.read_text(errors="replace")
        assert worker.proc.poll() is None and worker.proc.pid == pid, "the worker exited"
        assert "Unrecoverable error" not in log, worker.tail()
        assert "Connection to broker lost" in log, "the worker never saw its connection go"
        alive = publisher.sender.app.control.ping(timeout=2.0)
        assert alive, "the worker does not answer a ping over RabbitMQ after the reconnect"
    finally:
        worker.stop()
        for key in redis_client.scan_iter(match=f"{prefix}*", count=1000):
            redis_client.delete(key)

    from producers.wire import state

    for user in users:
        keys = publisher.keys.user(user)
        assert not state.batches(publisher.redis, keys), f"{user}: batches left pending"


def test_promote_task_is_routed_to_the_ingest_quorum_queue(vhost: Vhost, settings: Settings) -> None:
    """A producer alone (no worker) declares the queues as the worker does, and a kick waits in the ingest
    queue: confirmed by the broker before send returns."""
    deploy = Settings(redis_url=settings.redis_url, broker_url=vhost.url, key_prefix=f"{PREFIX}-amqp-send")
    sender = Publisher(deploy).sender
    depths = queue_depths(deploy, ALL_QUEUES)
    assert depths is not None
    before = depths()["memoryos.ingest"]
    assert sender.send(PROMOTE_TASK, "nobody")
    assert depths() == {"memoryos.ingest": before + 1, "memoryos.persona": 0, "memoryos.retrieval": 0}
    assert vhost.queues()["memoryos.ingest"]["type"] == "quorum"

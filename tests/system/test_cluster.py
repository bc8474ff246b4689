"""Memory on a Redis Cluster (`redis+cluster://`), the broker on another Redis: the whole flow works.

A private 6-node cluster (3 masters, 3 replicas) started and removed here; a real worker process (the
README's command) whose Celery broker is the shared test Redis under this run's prefix; the real store,
embeddings and the fake LLM. Publishing, promotion, RPC retrieval, the sharded global structures (sweep
index, user index, counters), export, the operators' dead-letter listing and inspect, and forget are
checked against the cluster.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

import producers
from memoryos_workers.counters import deployment_stats, read_counters
from memoryos_workers.testing.redis_cluster import PrivateCluster
from producers.connection import redis_client
from producers.pending import PendingWork
from producers.publish import Publisher
from producers.wire import state
from producers.wire.keys import CLUSTER_SHARDS
from schemas.settings import Settings
from tests.conftest import PREFIX
from tests.processes import WorkerProcess
from tests.system.test_faults import wait_all_idle

pytestmark = pytest.mark.integration

KNOBS: dict[str, Any] = {"lock_ttl": 3, "kick_stale_after": 4, "sweep_interval": 1}


def cluster_env(cluster: PrivateCluster, prefix: str, data_dir: Path, broker_url: str,
                **knobs: Any) -> tuple[Settings, dict[str, str]]:
    """Settings for the test side and the same as the environment of a worker or beat process."""
    values = {**KNOBS, **knobs}
    settings = Settings(redis_url=cluster.url, broker_url=broker_url, key_prefix=prefix, data_dir=data_dir,
                        **values)
    env = {
        **os.environ,
        "MEMORYOS_REDIS_URL": cluster.url,
        "MEMORYOS_BROKER_URL": broker_url,
        "MEMORYOS_KEY_PREFIX": prefix,
        "MEMORYOS_DATA_DIR": str(data_dir),
        "PYTHONUNBUFFERED": "1",
        **{f"MEMORYOS_{name.upper()}": str(value) for name, value in values.items()},
    }
    return settings, env


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateCluster]:
    cl = PrivateCluster(tmp_path_factory.mktemp("cluster")).start()
    try:
        yield cl
    finally:
        cl.stop()


@pytest.fixture(scope="module")
def deployment(cluster: PrivateCluster, tmp_path_factory: pytest.TempPathFactory, settings: Settings,
               redis_client: redis.Redis) -> Iterator[tuple[Settings, WorkerProcess]]:
    """A worker process on the cluster, its broker the shared test Redis under a prefix of its own."""
    folder = tmp_path_factory.mktemp("cluster-deploy")
    prefix = f"{PREFIX}-cl-{uuid.uuid4().hex[:6]}"
    deploy_settings, env = cluster_env(cluster, prefix, folder / "data", settings.redis_url)
    worker = WorkerProcess("cluster", env, folder, concurrency=4)
    worker.start()
    try:
        yield deploy_settings, worker
    finally:
        worker.stop()
        for key in redis_client.scan_iter(match=f"{prefix}*", count=1000):
            redis_client.delete(key)


def test_cluster_url_gives_a_cluster_client_and_sharded_layout(deployment: tuple[Settings, WorkerProcess]) -> None:
    settings, _ = deployment
    publisher = Publisher(settings)
    assert isinstance(publisher.redis, RedisCluster)
    assert len(publisher.keys.sweep.names) == CLUSTER_SHARDS
    masters = {publisher.redis.get_node_from_key(name).name for name in publisher.keys.sweep.names}
    assert len(masters) == 3, "the sweep index's shards spread over every master"
    with pytest.raises(ValueError, match="MEMORYOS_BROKER_URL"):
        Settings(redis_url=settings.redis_url, broker_url=None, key_prefix="x")


def exported_turns(publisher: Publisher, user: str) -> list[str]:
    """The user's turn ids as `memoryos export` lists them (asked of the worker that owns the store)."""
    from producers.operations import export_user

    return [r["turn_id"] for r in export_user(user, publisher=publisher) if r["type"] == "turn"]


def test_the_flow_on_a_cluster(deployment: tuple[Settings, WorkerProcess]) -> None:
    settings, worker = deployment
    publisher = Publisher(settings)
    client = publisher.redis
    users = [f"cl-user-{i}-{uuid.uuid4().hex[:4]}" for i in range(6)]
    slots = {client.keyslot(publisher.keys.user(u).stm) for u in users}
    assert len({client.nodes_manager.get_node_from_slot(s).name for s in slots}) >= 2, "users on several masters"

    published: dict[str, list[str]] = {}
    for user in users:
        turns = [{"user_id": user, "turn_id": f"{user}-t{i:03d}", "user_input": f"turn {i}: I keep bees in Porto",
                  "agent_response": f"ok {i}"} for i in range(35)]
        published[user] = publisher.publish_many(turns[:20])
        # As on a replica just promoted: no script loaded anywhere. Pipelined EVALSHAs answered NOSCRIPT
        # are loaded and sent again (MemoryCluster); they ran nothing the first time, so nothing doubles.
        client.execute_command("SCRIPT FLUSH", target_nodes=RedisCluster.ALL_NODES)
        for turn in turns[20:]:
            published[user].append(publisher.publish(turn))
        assert publisher.publish(turns[0]) == turns[0]["turn_id"], "a repeated turn_id is accepted"

    pending = PendingWork(publisher)
    wait_all_idle(pending, users, timeout=180, flush=True)
    for user in users:
        assert exported_turns(publisher, user) == published[user], f"{user}: not each turn once, in order"
        keys = publisher.keys.user(user)
        assert not state.batches(client, keys) and not state.buffered(client, keys), "all promoted"

    # The user index, merged from its shards, in id order and a page at a time.
    listed = state.users(client, publisher.keys.users, prefix="cl-user-", limit=1000)
    assert set(users) <= set(listed) and listed == sorted(listed)
    first = state.users(client, publisher.keys.users, prefix="cl-user-", limit=2)
    rest = state.users(client, publisher.keys.users, prefix="cl-user-", after=first[-1], limit=1000)
    assert first + rest == listed

    counters = read_counters(client, publisher.keys)
    assert counters["pages_promoted"] >= 25 * len(users), counters
    stats = deployment_stats(publisher)
    assert stats["users_indexed"] >= len(users) and stats["pending_batches"] == 0
    assert {f"queue_{q}" for q in ("memoryos.ingest", "memoryos.persona", "memoryos.retrieval")} <= set(stats)

    # Retrieval over RPC: the lane and the reply lists on the cluster.
    context = producers.retrieve(users[0], "What do I keep in Porto?", deadline_ms=30_000, publisher=publisher)
    assert not context.degraded and (context.pages or context.short_term)

    # The operators' commands over RPC: dead letters (none), inspect.
    from producers.operations import call_admin, forget_user

    assert call_admin("dead_list", None, publisher=publisher) == []
    assert call_admin("inspect", users[0], publisher=publisher)["short_term"]

    # Forget removes the user from every sharded structure too.
    removed = forget_user(users[1], publisher=publisher)
    assert removed["short_term"] == settings.short_term_capacity, removed
    assert users[1] not in state.users(client, publisher.keys.users, prefix="cl-user-", limit=1000)
    assert client.zscore(publisher.keys.sweep.of(users[1]), users[1]) is None


def test_a_plain_url_keeps_the_old_layout() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:6379/0", key_prefix="mos")
    keys = Publisher(settings, client=redis_client(settings.redis_url)).keys
    assert (keys.sweep.names, keys.stats.names, keys.users.names) == (("mos:sweep",), ("mos:stats",), ("mos:users",))

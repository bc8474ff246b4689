"""Cluster URLs, the key layout on one Redis and on a cluster, and URLs in messages (no server needed)."""

from __future__ import annotations

import pytest
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from producers.cluster import is_cluster_url, parse_cluster_url
from producers.errors import redact_url
from producers.replication import probe_key
from producers.wire.keys import CLUSTER_SHARDS, Keys, Sharded
from schemas.settings import Settings


def test_cluster_urls_name_seed_nodes_and_connection_options() -> None:
    seeds, options = parse_cluster_url("redis+cluster://app:p%40ss@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002")
    assert seeds == [("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002)]
    assert (options["username"], options["password"]) == ("app", "p@ss")
    seeds, options = parse_cluster_url("rediss+cluster://h1:6379?ssl_cert_reqs=required&ssl_ca_certs=/etc/ca.pem")
    assert seeds == [("h1", 6379)] and options["ssl_ca_certs"] == "/etc/ca.pem"
    assert options["connection_class"].__name__ == "SSLConnection"
    assert parse_cluster_url("redis+cluster://h1:1/0")[1] == {}
    with pytest.raises(ValueError, match="only database 0"):
        parse_cluster_url("redis+cluster://h1:1/2")
    with pytest.raises(ValueError, match="is not host:port"):
        parse_cluster_url("redis+cluster://h1:1,h2")
    assert is_cluster_url("REDIS+CLUSTER://h:1") and not is_cluster_url("redis://h:1/0") and not is_cluster_url(None)


def test_passwords_never_reach_a_message() -> None:
    assert redact_url("redis+cluster://app:secret@h1:1,h2:2") == "redis+cluster://app:***@h1:1,h2:2"
    assert redact_url("amqp://guest:secret@127.0.0.1:5672/v") == "amqp://guest:***@127.0.0.1:5672/v"
    assert redact_url("redis://:s@cr@t@h:6379/0?ssl_ca_certs=/a@b") == "redis://***@h:6379/0?ssl_ca_certs=/a@b"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"


def test_one_redis_keeps_every_key_name_it_had() -> None:
    keys = Keys.for_settings(Settings(redis_url="redis://127.0.0.1:6379/0", key_prefix="mos"))
    assert keys.sweep == Sharded(("mos:sweep",)) and keys.sweep.of("anyone") == "mos:sweep"
    assert keys.stats.any() == "mos:stats" and keys.users.group(["a", "b"]) == {"mos:users": ["a", "b"]}
    assert (keys.dead_index, keys.rpc_requests, keys.llm_budget) == ("mos:dead", "mos:rpc:requests", "mos:llmtat")


def test_a_cluster_shards_the_hot_structures_over_the_slot_range() -> None:
    keys = Keys.for_settings(Settings(redis_url="redis+cluster://h:1", broker_url="amqp://h//", key_prefix="mos"))
    for sharded in (keys.sweep, keys.users, keys.stats):
        assert len(sharded.names) == CLUSTER_SHARDS == len(set(sharded.names))
        slots = [key_slot(name.encode()) for name in sharded.names]
        part = REDIS_CLUSTER_HASH_SLOTS // CLUSTER_SHARDS
        assert [slot // part for slot in slots] == list(range(CLUSTER_SHARDS)), "shard i in the i-th part"
    users = [f"user-{i}" for i in range(200)]
    assert all(keys.sweep.of(u) == keys.sweep.of(u) for u in users), "a user stays in its shard"
    assert len({keys.sweep.of(u) for u in users}) == CLUSTER_SHARDS
    grouped = keys.users.group(users)
    assert sorted(u for members in grouped.values() for u in members) == sorted(users)
    assert "{u:" in keys.user("x").stm  # per-user keys are the same on both


def test_a_replica_probe_lives_in_the_slot_it_stands_for() -> None:
    keys = Keys("mos", CLUSTER_SHARDS)
    for key in (keys.user("alice").state, keys.sweep.of("alice"), keys.users.of("alice"), "mos:dead"):
        assert key_slot(probe_key("mos", key).encode()) == key_slot(key.encode())
        assert probe_key("mos", key).startswith("mos:")

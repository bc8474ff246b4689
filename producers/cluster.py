"""Redis Cluster as the memory store: the `redis+cluster://` URL and what differs from one Redis.

`MEMORYOS_REDIS_URL=redis+cluster://[user:password@]host:port[,host:port...][?options]` names seed nodes
of a cluster (`rediss+cluster://` for TLS, with the same query options as `rediss://`, e.g.
`ssl_ca_certs=/path/ca.pem`); redis-py's `RedisCluster` discovers the rest, routes every command to the
master of its key's slot and follows MOVED and ASK while slots move between masters.

Why this works without changing the data model: every per-user key carries the hash tag `{u:<user>}`, so a
user's keys share one slot and each per-user Lua script runs on one master. The global structures are
laid out for a cluster in producers/wire/keys.py (sharded where every publish writes them).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.connection import parse_url
from redis.exceptions import (
    AskError,
    ClusterError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterUnreachableError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.retry import Retry

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")

# How long a command keeps retrying while a master fails over or a slot moves (TRYAGAIN, CLUSTERDOWN,
# connection errors): about 12 retries from 50 ms up to 1 s apart, a few seconds in all. Longer, and a chat
# backend's publish would hang through a whole failover; it raises instead and is retried with the same
# turn_id (duplicates are dropped).
CLUSTER_RETRIES = 12
_BACKOFF = ExponentialWithJitterBackoff(base=0.05, cap=1.0)


# What a cluster answers while a master fails over or a slot moves (CLUSTERDOWN, TRYAGAIN, a redirection
# redis-py gave up following, a write to a master just demoted, no node reachable for a moment): like a Redis
# that is down, it passes; publishes raise RedisUnavailableError for it, and are sent again.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (ClusterError, AskError, TryAgainError, ReadOnlyError,
                                                 SlotNotCoveredError, RedisClusterUnreachableError)


def is_cluster_url(url: str | None) -> bool:
    return bool(url) and url.split("://", 1)[0].lower() in CLUSTER_SCHEMES  # type: ignore[union-attr]


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """(seed nodes, connection options) of a `redis+cluster://` URL; ValueError saying what is wrong."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in CLUSTER_SCHEMES:
        raise ValueError(f"not a Redis Cluster URL (expected {' or '.join(s + '://' for s in CLUSTER_SCHEMES)})")
    rest, qmark, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    tail = slash + path + qmark + query
    userinfo, at, hosts = authority.rpartition("@")
    seeds: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon or not host or not port.isdigit():
            raise ValueError(f"Redis Cluster URL: seed node {unquote(item)!r} is not host:port")
        seeds.append((host.strip("[]"), int(port)))
    plain = "rediss" if scheme.lower().startswith("rediss") else "redis"
    first = f"{seeds[0][0]}:{seeds[0][1]}"
    options = parse_url(f"{plain}://{userinfo}{at}{first}{tail}")
    options.pop("host", None)
    options.pop("port", None)
    if options.pop("db", 0) not in (0, None):
        raise ValueError("Redis Cluster URL: a cluster has only database 0; remove the /N path")
    return seeds, options


class MemoryCluster(RedisCluster):
    """RedisCluster whose pipelines recover from NOSCRIPT. redis-py leaves that to the caller in a cluster
    pipeline, and it is routine here: a replica promoted in a failover, or a node added, has an empty
    script cache (SCRIPT LOAD is not replicated). A pipelined EVALSHA answered NOSCRIPT ran nothing, so
    after loading the script on every master it is sent again, alone, and its answer takes its place."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.script_sources: dict[str, Any] = {}

    def register_script(self, script: Any) -> Any:
        registered = super().register_script(script)
        self.script_sources[registered.sha] = script
        return registered

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        pipe = super().pipeline(transaction=transaction, shard_hint=shard_hint)
        if transaction:
            return pipe
        pipe.__class__ = ScriptSafePipeline
        pipe._owner, pipe._evalshas = self, {}  # type: ignore[attr-defined]
        return pipe


class ScriptSafePipeline(ClusterPipeline):
    """A cluster pipeline (made by MemoryCluster.pipeline) that re-sends EVALSHAs answered NOSCRIPT."""

    _owner: MemoryCluster
    _evalshas: dict[int, tuple[tuple[Any, ...], dict[str, Any]]]

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if args and str(args[0]).upper() == "EVALSHA":
            self._evalshas[len(self)] = (args, kwargs)
        return super().execute_command(*args, **kwargs)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        queued, self._evalshas = self._evalshas, {}
        results = super().execute(raise_on_error=False)
        missing = [i for i in sorted(queued) if isinstance(results[i], NoScriptError)]
        if missing:
            for sha in {str(queued[i][0][1]) for i in missing}:
                source = self._owner.script_sources.get(sha)
                if source is not None:
                    self._owner.script_load(source)  # on every master
            again = self._owner.pipeline()
            for i in missing:
                args, kwargs = queued[i]
                again.execute_command(*args, **kwargs)
            for i, result in zip(missing, again.execute(raise_on_error=False), strict=True):
                results[i] = result
        if raise_on_error:
            for result in results:
                if isinstance(result, Exception):
                    raise result
        return results


def cluster_client(url: str, **options: Any) -> RedisCluster:
    """A RedisCluster client for a `redis+cluster://` URL; `options` are the connection options (timeouts)."""
    seeds, url_options = parse_cluster_url(url)
    return MemoryCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in seeds],
        retry=Retry(_BACKOFF, CLUSTER_RETRIES),
        **{**options, **url_options},
    )


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def pool_for_key(client: Any, key: str) -> redis.ConnectionPool:
    """The connection pool of the master serving `key` (a plain client's own pool), for the few commands
    run on one connection by hand (a BLPOP timed by the caller, WAIT after a write)."""
    if not is_cluster(client):
        return client.connection_pool
    node = client.get_node_from_key(key)
    return client.get_redis_connection(node).connection_pool


def refresh_slots(client: Any) -> None:
    """After a MOVED seen outside redis-py's own command path: re-read which master serves which slot."""
    if is_cluster(client):
        client.nodes_manager.initialize()

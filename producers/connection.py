"""One Redis client per process and URL, with timeouts so a dead Redis fails fast instead of hanging.

A `redis+cluster://` URL gives a RedisCluster client (producers/cluster.py); any other URL the plain
client it always gave."""

from __future__ import annotations

import threading
from typing import Any

import redis

from producers.cluster import cluster_client, is_cluster_url

_clients: dict[str, Any] = {}
_lock = threading.Lock()

_OPTIONS = {"decode_responses": True, "socket_timeout": 5, "socket_connect_timeout": 3, "health_check_interval": 30}


def redis_client(url: str) -> redis.Redis:
    """redis.Redis, or redis.cluster.RedisCluster for a cluster URL (the same commands, routed by key)."""
    with _lock:
        client = _clients.get(url)
        if client is None:
            client = cluster_client(url, **_OPTIONS) if is_cluster_url(url) else redis.Redis.from_url(url, **_OPTIONS)
            _clients[url] = client
        return client

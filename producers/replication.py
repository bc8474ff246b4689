"""MEMORYOS_PUBLISH_MIN_REPLICAS: a publish returns only once that many replicas have its turns.

Redis replicates asynchronously: a master that dies right after it answered a publish can take the turn
with it when its replica is promoted. WAIT closes that window: it blocks until the replicas have
acknowledged every write the connection made. Three things make it a little more than one WAIT:

- WAIT counts writes made *on its own connection*, and the publish pipeline borrowed other connections
  from the pool (a cluster's publish touches up to three masters: the user's slot, its sweep-index shard
  and its user-index shard). So on one connection per master we write a probe key in each slot the publish
  touched, then WAIT: replication is in order, so a replica that has the probe has everything that master
  wrote before it.
- A publish that repeats a turn_id writes nothing (the turn is a duplicate), yet the original may still be
  unreplicated: the probe write makes the WAIT cover it all the same. So a caller who got ReplicationError
  and publishes again with the same turn_id gets its answer only once the turn is on the replicas.
- A probe answered MOVED or ASK (the slot is moving between masters) proves nothing about the master that
  took the turn: the slot map is refreshed and the whole barrier runs again, a few times, then the publish
  raises ReplicationError and is retried by its caller.

The probe key (`<slot's hash tag>:replack`) expires after a few seconds; it holds no data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from redis.crc import key_slot
from redis.exceptions import AskError

from producers.cluster import is_cluster, refresh_slots
from producers.errors import MemoryOSError
from producers.wire.keys import Keys

log = logging.getLogger("memoryos.replication")

PROBE_TTL_MS = 10_000
_ATTEMPTS = 3


class ReplicationError(MemoryOSError):
    """The master has the turns, but fewer replicas than MEMORYOS_PUBLISH_MIN_REPLICAS acknowledged them in
    time: should the master die now, they could be lost. Publish them again with the same turn_ids (nothing
    is stored twice); the call returns once the replicas have them."""


def probe_key(prefix: str, key: str) -> str:
    """A key of the deployment in `key`'s slot: its hash tag (or, untagged, the key itself) in braces."""
    start = key.find("{")
    end = key.find("}", start + 1) if start >= 0 else -1
    tag = key[start + 1 : end] if start >= 0 and end > start + 1 else key
    return f"{prefix}:{{{tag}}}:replack"


def publish_keys(keys: Keys, user_ids: Iterable[str]) -> Iterator[str]:
    """A key in each slot a publish of these users writes: the user's own, its sweep and user index shards
    (lazily: with no replicas to wait for, nothing is computed on the publish path)."""
    for user_id in dict.fromkeys(user_ids):
        yield from (keys.user(user_id).state, keys.sweep.of(user_id), keys.users.of(user_id))


class ReplicaBarrier:
    """`wait(keys)`: returns once `min_replicas` replicas of every master holding `keys` have all it wrote
    before, or raises ReplicationError after `timeout` seconds."""

    def __init__(self, client: Any, prefix: str, min_replicas: int, timeout: float) -> None:
        self.client = client
        self.prefix = prefix
        self.min_replicas = min_replicas
        self.timeout_ms = max(1, int(timeout * 1000))

    def wait(self, keys: Iterable[str]) -> None:
        if self.min_replicas <= 0:
            return
        probes = sorted({probe_key(self.prefix, k) for k in keys})
        if not is_cluster(self.client):
            probes = probes[:1]  # one server: one probe covers every write before it
        if not probes:
            return
        for attempt in range(_ATTEMPTS):
            acked, moved = self._round(probes)
            if not moved:
                break
            log.info("a slot moved during the replica wait (%s); waiting again", moved)
            refresh_slots(self.client)
            time.sleep(0.05 * (attempt + 1))
        else:
            raise ReplicationError(
                f"the turns are stored, but a slot was moving between masters while waiting for "
                f"{self.min_replicas} replica(s): publish them again with the same turn_id"
            )
        if acked < self.min_replicas:
            raise ReplicationError(
                f"the turns are stored on the master, but only {acked} of the {self.min_replicas} replica(s) "
                f"MEMORYOS_PUBLISH_MIN_REPLICAS asks for acknowledged them within {self.timeout_ms} ms: publish them "
                "again with the same turn_id (nothing is stored twice). If no replica is running, start one or "
                "lower MEMORYOS_PUBLISH_MIN_REPLICAS"
            )

    def _round(self, probes: list[str]) -> tuple[int, str]:
        """One probe write per slot and one WAIT per master, all masters at once; (fewest replicas that
        acknowledged on any master, the first redirection seen or '')."""
        groups: dict[int, tuple[Any, list[str]]] = {}
        for probe in probes:
            pool = self._pool(probe)
            groups.setdefault(id(pool), (pool, []))[1].append(probe)
        sent = []
        try:
            for pool, keys in groups.values():
                conn = pool.get_connection()
                sent.append((pool, conn, len(keys)))
                commands = [("SET", k, "1", "PX", PROBE_TTL_MS) for k in keys]
                conn.send_packed_command(conn.pack_commands([*commands, ("WAIT", self.min_replicas, self.timeout_ms)]))
            fewest, moved = self.min_replicas, ""
            for _, conn, n in sent:
                for _ in range(n):
                    try:
                        conn.read_response()
                    except AskError as exc:  # MOVED is an AskError too
                        moved = moved or str(exc)
                fewest = min(fewest, int(conn.read_response()))
            return fewest, moved
        except BaseException:
            for _, conn, _ in sent:
                conn.disconnect()  # replies may be left unread on it
            raise
        finally:
            for pool, conn, _ in sent:
                pool.release(conn)

    def _pool(self, key: str) -> Any:
        if not is_cluster(self.client):
            return self.client.connection_pool
        node = self.client.nodes_manager.get_node_from_slot(key_slot(key.encode()))
        return self.client.get_redis_connection(node).connection_pool


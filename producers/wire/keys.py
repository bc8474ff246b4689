"""The Redis key layout: the wire contract between producers and workers.

Every per-user key carries the hash tag `{u:<user_id>}` so each per-user Lua script touches one
Redis Cluster slot. The global keys are only ever used by single-key commands (a pipeline may touch
several, one command each), so each may live on any master of a cluster; why each is one key or
sharded is said where it is defined, in `Keys`.

On one Redis (`redis://`) every global structure is one key with the name it always had; on a cluster
(`redis+cluster://`) the structures that every publish writes are sharded (`Sharded`).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from producers.cluster import is_cluster_url

if TYPE_CHECKING:
    from schemas.settings import Settings

# Shards of a sharded structure on a cluster: fixed (a member's shard must never change), and more than a
# cluster has masters for a while, so the writes spread over all of them; readers send one command per
# shard in one pipeline, which redis-py sends as one round trip per master.
CLUSTER_SHARDS = 16


@dataclass(frozen=True)
class Sharded:
    """A global structure spread over `names`, each in its own cluster slot; a member (a user id) always
    lives in the same shard. On one Redis there is one name: the structure's name before sharding."""

    names: tuple[str, ...]

    def of(self, member: str) -> str:
        """The shard that holds `member`."""
        if len(self.names) == 1:
            return self.names[0]
        return self.names[zlib.crc32(member.encode()) % len(self.names)]

    def group(self, members: Iterable[str]) -> dict[str, list[str]]:
        """Members by the shard that holds them (one command per shard instead of one per member)."""
        out: dict[str, list[str]] = {}
        for member in dict.fromkeys(members):
            out.setdefault(self.of(member), []).append(member)
        return out

    def any(self) -> str:
        """A shard for a write that has no member (a counter increment): random, so increments spread."""
        return self.names[0] if len(self.names) == 1 else random.choice(self.names)

    @classmethod
    def make(cls, name: str, shards: int) -> Sharded:
        """`name` on one Redis; on a cluster `name:{tag}` for each shard, with hash tags chosen so the
        shards' slots spread evenly over the slot range (shard i in its i-th part), and so over the
        masters as long as slots are spread evenly over them."""
        if shards <= 1:
            return cls((name,))
        return cls(tuple(f"{name}:{{{_tag_in_part(name, i, shards)}}}" for i in range(shards)))


def _tag_in_part(name: str, index: int, parts: int) -> str:
    low = index * REDIS_CLUSTER_HASH_SLOTS // parts
    high = (index + 1) * REDIS_CLUSTER_HASH_SLOTS // parts
    n = 0
    while not low <= key_slot(f"{name}.{index}.{n}".encode()) < high:
        n += 1
    return f"{name}.{index}.{n}"


@dataclass(frozen=True)
class UserKeys:
    stm: str  # list of page JSON, oldest first: the short-term memory
    buf: str  # list of page JSON that left short-term and wait for a batch
    state: str  # hash: seq, batch_seq, buf_since, epoch
    ids: str  # sorted set turn_id -> publish time, for idempotent publishing
    batches: str  # list of pending batch ids, FIFO
    batch_prefix: str  # + batch id = hash of one batch (state, pages, attempts, not_before, ...)
    kick: str  # coalescing flag: a promote task for this user is on its way
    lock: str  # per-user work lock (value: fencing token)
    fence: str  # counter issuing fencing tokens
    dead: str  # list of dead-lettered batch ids
    dead_persona: str  # list of dead-lettered persona extractions (JSON: error, attempts, turn_ids)
    seg_len: str  # hash segment_id -> L_interaction (pages in the segment)
    seg_visit: str  # hash segment_id -> N_visit (retrievals that hit it)
    seg_access: str  # hash segment_id -> last access time
    # Written by earlier versions (a sorted set of heat as last stored); heat is now computed when read
    # (memoryos_workers/memory/heat.py), so nothing writes it and forget only deletes what is left.
    heat_legacy: str
    seg_lbase: str  # hash segment_id -> pages already analysed for the persona (L_interaction = len - lbase)
    heat_kick: str  # coalescing flag: a refresh_heat task is on its way
    persona_kick: str  # coalescing flag: an extract_persona task is on its way
    persona_lock: str  # lock of persona work (separate from promotion, which it never blocks)
    epoch: str  # bumped by forget; work that read another epoch writes nothing more
    knobs: str  # hash of this user's settings (capacities, thresholds) that override the global ones
    profile: str  # JSON of the user's last profile, written by the store owner; degraded retrievals read it

    def batch(self, batch_id: str) -> str:
        return self.batch_prefix + batch_id

    def script_keys(self) -> list[str]:
        """KEYS for the per-user scripts, in the order the Lua files expect (lua/common.lua). The first eight
        are all that publish.lua touches, so a publish passes only those (scripts.PUBLISH_KEYS)."""
        return [
            self.stm, self.buf, self.state, self.ids, self.batches, self.batch_prefix, self.kick, self.knobs,
            self.lock, self.dead, self.seg_len, self.seg_visit, self.seg_access, self.seg_lbase,
            self.heat_kick, self.persona_kick, self.persona_lock,
        ]


class Keys:
    """Builds key names under one deployment's prefix; `shards` > 1 (a cluster) shards the hot structures."""

    def __init__(self, prefix: str, shards: int = 1) -> None:
        self.prefix = prefix
        self.shards = shards
        # Sorted set user_id -> next time the sweep must look. Sharded by user: every publish re-asserts its
        # user's entry, so one key would put every publish of the deployment on one master. The sweep reads
        # each shard's due users (one pipelined round trip).
        self.sweep = Sharded.make(f"{prefix}:sweep", shards)
        # Sorted set user_id -> time of last dead letter. One key: written only when a batch or a persona
        # extraction is dead-lettered (after all its retries) and on replay, read by operators.
        self.dead_index = f"{prefix}:dead"
        # Celery's global_keyprefix, on the broker's Redis (a cluster cannot be Celery's broker).
        self.celery = f"{prefix}:celery:"
        # Hash of counters (LLM calls, tokens, fallbacks, retrieval latency histogram, ...). Sharded, each
        # increment going to a random shard: every promotion and every retrieval counts, from every worker.
        # Readers sum the shards (counters.read_counters), one pipelined round trip.
        self.stats = Sharded.make(f"{prefix}:stats", shards)
        # One short-lived list per RPC call, for its answer: a new key per call, so replies spread over the
        # slots (and masters) by themselves.
        self.reply_prefix = f"{prefix}:reply:"
        # The shared LLM token budget (memoryos_workers.llm.token_budget). One key by nature: it is one
        # quota, and splitting it would let each shard spend the whole quota. One script call per LLM call,
        # which takes seconds, so it is never hot.
        self.llm_budget = f"{prefix}:llmtat"
        # Sorted set of every user id that published, all scores 0 so ZRANGEBYLEX lists them in id order
        # (and one tenant's ids, which share a prefix, as one range); forget removes the user. Sharded by
        # user, since every publish writes it; a page of ids is merged from every shard's page
        # (wire/state.users), one pipelined round trip.
        self.users = Sharded.make(f"{prefix}:users", shards)
        # List: read requests for the retrieval servers (wire/rpc.py). One key on purpose: a server thread
        # blocks on one list (BLPOP on several needs them in one slot), and one list is what lets any free
        # thread of any server take the next request at once. Each retrieval costs it two commands (the push,
        # the pop) against several milliseconds of a server's CPU, so the master holding it serves tens of
        # thousands of retrievals a second, far beyond the servers behind it.
        self.rpc_requests = f"{prefix}:rpc:requests"
        # Sorted set: retrieval server name -> last heartbeat. One key: one write per server every few seconds.
        self.rpc_servers = f"{prefix}:rpc:servers"

    @classmethod
    def for_settings(cls, settings: Settings) -> Keys:
        """The layout for a deployment: sharded when MEMORYOS_REDIS_URL names a cluster."""
        return cls(settings.key_prefix, CLUSTER_SHARDS if is_cluster_url(settings.redis_url) else 1)

    def reply(self, request_id: str) -> str:
        return self.reply_prefix + request_id

    def llm_calibration(self, model: str) -> str:
        """A model's learned characters per token (memoryos_workers.llm.token_count), shared by every worker.
        One key per model: read and corrected once per LLM call."""
        return f"{self.prefix}:llmcal:{model}"

    def user(self, user_id: str) -> UserKeys:
        base = f"{self.prefix}:{{u:{user_id}}}:"
        return UserKeys(
            stm=base + "stm",
            buf=base + "buf",
            state=base + "state",
            ids=base + "ids",
            batches=base + "batches",
            batch_prefix=base + "batch:",
            kick=base + "kick",
            lock=base + "lock",
            fence=base + "fence",
            dead=base + "dead",
            dead_persona=base + "dead:persona",
            seg_len=base + "seg:len",
            seg_visit=base + "seg:visit",
            seg_access=base + "seg:access",
            heat_legacy=base + "heat",
            seg_lbase=base + "seg:lbase",
            heat_kick=base + "heatkick",
            persona_kick=base + "personakick",
            persona_lock=base + "plock",
            epoch=base + "epoch",
            knobs=base + "knobs",
            profile=base + "profile",
        )

    def user_pattern(self) -> str:
        """For operators' tools only; the hot paths never SCAN."""
        return f"{self.prefix}:{{u:*"

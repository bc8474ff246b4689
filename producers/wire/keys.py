"""The Redis key layout: the wire contract between producers and workers.

Every per-user key carries the hash tag `{u:<user_id>}` so each per-user Lua script touches one
Redis Cluster slot. The few global keys (sweep index, dead-letter index, the RPC request list) are only
ever used by single-key commands.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    """Builds key names under one deployment's prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.sweep = f"{prefix}:sweep"  # sorted set user_id -> next time the sweep must look
        self.dead_index = f"{prefix}:dead"  # sorted set user_id -> time of last dead letter
        self.celery = f"{prefix}:celery:"  # Celery's global_keyprefix
        self.stats = f"{prefix}:stats"  # hash of counters (LLM calls, tokens, fallbacks, ...)
        self.reply_prefix = f"{prefix}:reply:"  # one short-lived list per RPC call, for its answer
        self.llm_budget = f"{prefix}:llmtat"  # the shared LLM token budget (memoryos_workers.llm.token_budget)
        # Sorted set of every user id that published, all scores 0 so ZRANGEBYLEX lists them in id order
        # (and one tenant's ids, which share a prefix, as one range); forget removes the user.
        self.users = f"{prefix}:users"
        self.rpc_requests = f"{prefix}:rpc:requests"  # list: read requests for the retrieval servers (wire/rpc.py)
        self.rpc_servers = f"{prefix}:rpc:servers"  # sorted set: retrieval server name -> last heartbeat

    def reply(self, request_id: str) -> str:
        return self.reply_prefix + request_id

    def llm_calibration(self, model: str) -> str:
        """A model's learned characters per token (memoryos_workers.llm.token_count), shared by every worker."""
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

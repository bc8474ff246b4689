"""Segment statistics in Redis and the heat they give: the one owner of `seg:len`, `seg:visit`,
`seg:access`, `seg:lbase`, the heat sorted set and the "heat refresh on its way" flag.

Why in Redis rather than in the segments' vector payloads: they change on every retrieval (visits) and
every promotion (length), from many threads and processes at once; hash increments are atomic where a
payload read-modify-write is not. The only other writer is producers/wire/lua/segment_apply.lua, which
adds a batch's pages under the user's lock in the same script that marks the batch applied (so a
replayed batch never counts twice). It only counts: heat is never stored, it is computed here when
read, by memory/heat.py (the formula's one home), with the HeatParams the runtime built from Settings.

L_interaction is `len - lbase`: the persona raises the analysed base instead of resetting the length, so
a promotion running at the same time never loses an increment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import redis

from memoryos_workers.memory.heat import HeatParams, heat
from producers.sender import TaskSender
from producers.wire.contract import REFRESH_HEAT_TASK
from producers.wire.keys import UserKeys

log = logging.getLogger("memoryos.segment_stats")


class SegmentStats:
    def __init__(self, client: redis.Redis, params: HeatParams) -> None:
        self.redis = client
        self.params = params

    # -- reading --------------------------------------------------------------------------------------
    def heats(self, keys: UserKeys, now: float | None = None) -> dict[str, float]:
        """Current heat of every segment of a user, recency from the clock (no decay job needed)."""
        now = time.time() if now is None else now
        pipe = self.redis.pipeline(transaction=False)
        for key in (keys.seg_len, keys.seg_visit, keys.seg_access, keys.seg_lbase):
            pipe.hgetall(key)
        lengths, visits, access, analysed = pipe.execute()
        return {
            sid: heat(
                float(visits.get(sid, 0)), float(length) - float(analysed.get(sid, 0)), float(access.get(sid, now)),
                now, self.params,
            )
            for sid, length in lengths.items()
        }

    def lengths(self, keys: UserKeys) -> dict[str, int]:
        """Pages per segment."""
        return {sid: int(n) for sid, n in self.redis.hgetall(keys.seg_len).items()}

    def visits(self, keys: UserKeys) -> dict[str, int]:
        return {sid: int(n) for sid, n in self.redis.hgetall(keys.seg_visit).items()}

    def count(self, keys: UserKeys) -> int:
        """How many segments the user has."""
        return int(self.redis.hlen(keys.seg_len))

    def hot(self, keys: UserKeys, tau: float) -> list[str]:
        """Segments at or over tau that still hold pages the persona has not analysed, hottest first."""
        heats = self.heats(keys)
        lengths = self.redis.hgetall(keys.seg_len)
        analysed = self.redis.hgetall(keys.seg_lbase)
        return [
            sid
            for sid, h in sorted(heats.items(), key=lambda kv: -kv[1])
            # The recency term is a hair under 1 once any time has passed: a 4-page segment is hot at birth.
            if h >= tau - 1e-6 and int(lengths.get(sid, 0)) > int(analysed.get(sid, 0))
        ]

    def unanalysed(self, keys: UserKeys, segment_ids: Sequence[str]) -> int:
        """Pages of these segments the persona has not read yet (their L_interaction)."""
        if not segment_ids:
            return 0
        lengths = self.redis.hmget(keys.seg_len, list(segment_ids))
        bases = self.redis.hmget(keys.seg_lbase, list(segment_ids))
        return sum(max(0, int(n or 0) - int(b or 0)) for n, b in zip(lengths, bases, strict=True))

    # -- writing --------------------------------------------------------------------------------------
    def record_visits(self, keys: UserKeys, segment_ids: Sequence[str], claim_ttl_ms: int) -> bool:
        """N_visit += 1 and last access = now for each segment a retrieval drew on, in one round trip that
        also claims the refresh flag; True when the caller should send the refresh (see HeatRefresh)."""
        pipe = self.redis.pipeline(transaction=False)
        for sid in segment_ids:
            pipe.hincrby(keys.seg_visit, sid, 1)
        pipe.hset(keys.seg_access, mapping=dict.fromkeys(segment_ids, repr(time.time())))
        pipe.set(keys.heat_kick, "1", nx=True, px=claim_ttl_ms)
        return bool(pipe.execute()[-1])

    def mark_analysed(self, keys: UserKeys, per_segment: Mapping[str, int], *, sync: bool = False) -> None:
        """The persona read these pages: raise each segment's analysed base (L_interaction falls by as
        much). `sync` sets the base to the length, for segments found with nothing left to read."""
        lengths = self.redis.hgetall(keys.seg_len) if sync else {}
        pipe = self.redis.pipeline(transaction=False)
        for sid, pages_done in per_segment.items():
            if sync:
                pipe.hset(keys.seg_lbase, sid, lengths.get(sid, 0))
            else:
                pipe.hincrby(keys.seg_lbase, sid, pages_done)
        pipe.execute()

    def unmark_analysed(self, keys: UserKeys, per_segment: Mapping[str, int]) -> None:
        """Replaying dead-lettered persona pages: they count as unanalysed again."""
        pipe = self.redis.pipeline(transaction=False)
        for sid, pages in per_segment.items():
            pipe.hincrby(keys.seg_lbase, sid, -pages)
        pipe.execute()

    def delete(self, keys: UserKeys, segment_ids: Sequence[str]) -> None:
        """Evicted segments leave every statistic."""
        if not segment_ids:
            return
        pipe = self.redis.pipeline(transaction=False)
        for key in (keys.seg_len, keys.seg_visit, keys.seg_access, keys.seg_lbase):
            pipe.hdel(key, *segment_ids)
        pipe.execute()

    @staticmethod
    def user_keys(keys: UserKeys) -> list[str]:
        """Every key this module owns for a user, for forget."""
        return [keys.seg_len, keys.seg_visit, keys.seg_access, keys.seg_lbase, keys.heat_kick, keys.heat_legacy]


class HeatRefresh:
    """At most one refresh_heat on its way per user: a flag set with NX before sending, dropped by the
    task when it starts (and by a failed send, so the next caller tries again)."""

    def __init__(self, client: redis.Redis, sender: TaskSender, ttl_s: float) -> None:
        self.redis = client
        self.sender = sender
        # As long as a lost kick may take to notice. Shorter, a refresh still queued behind long persona
        # calls would be sent again by the next retrieval, and duplicates would pile up exactly when the
        # queue is busiest.
        self.ttl_ms = int(ttl_s * 1000)

    def request(self, user_id: str, keys: UserKeys) -> bool:
        """Claims the flag and sends; False when one is already on its way or the send failed."""
        if not self.redis.set(keys.heat_kick, "1", nx=True, px=self.ttl_ms):
            return False
        return self.send_claimed(user_id, keys)

    def send_claimed(self, user_id: str, keys: UserKeys) -> bool:
        """For a caller that claimed the flag itself (SegmentStats.record_visits)."""
        if self.sender.send(REFRESH_HEAT_TASK, user_id):
            return True
        try:
            self.redis.delete(keys.heat_kick)  # let the next caller try again
        except redis.RedisError as exc:  # the flag expires on its own
            log.debug("could not drop the heat refresh flag of %s: %s", user_id, exc)
        return False

    def started(self, keys: UserKeys) -> None:
        """The refresh task runs: from now on a new request is a new refresh."""
        self.redis.delete(keys.heat_kick)

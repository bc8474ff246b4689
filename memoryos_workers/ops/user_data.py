"""All of a user's data, on the side that owns the stores: `collect_user_records` (what `memoryos export`
writes as JSON Lines), `inspect_user`, and `erase_user` (forget: every tier, idempotently). Clients that
cannot open the store call them over RPC through producers.operations.export_user / forget_user.

forget bumps the user's epoch first, so in-flight work stops at its next check, deletes Redis and
vector-store data, then waits for the user's locks and deletes the vector data once more: a write
that slipped in between (a promotion mid-upsert) cannot bring deleted data back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from memoryos_workers.memory.pages import TERMS
from memoryos_workers.memory.segment_stats import SegmentStats
from memoryos_workers.pipeline.locks import UserLock
from memoryos_workers.runtime import Runtime
from producers.wire import state
from producers.wire.keys import UserKeys
from producers.wire.knobs import user_knobs


def collect_user_records(rt: Runtime, user_id: str) -> Iterator[dict[str, Any]]:
    """Every stored turn once (by turn_id), in publish order, then segments, profile and facts."""
    keys = rt.keys.user(user_id)
    turns: dict[str, dict[str, Any]] = {}
    segments = {h.id: h.payload for h in rt.segments.all_for_user(user_id)}
    for hit in rt.pages.all_for_user(user_id):
        record = {k: v for k, v in hit.payload.items() if k not in ("embedding_model", TERMS)}  # derived
        seg = segments.get(record.get("segment_id") or "", {})
        turns[record["turn_id"]] = {"type": "turn", "tier": "mid_term", **record, "segment_theme": seg.get("theme")}
    for tier, batches in (
        ("pending", state.batches(rt.redis, keys)),
        ("dead_letter", state.batches(rt.redis, keys, dead=True)),
    ):
        for batch in batches:
            for page in batch.pages:
                turns.setdefault(
                    page.turn_id,
                    {"type": "turn", "tier": tier, "batch_id": batch.batch_id, **page.model_dump(mode="json")},
                )
    for tier, pages in (("pending", state.buffered(rt.redis, keys)), ("short_term", state.short_term(rt.redis, keys))):
        for page in pages:
            turns.setdefault(page.turn_id, {"type": "turn", "tier": tier, **page.model_dump(mode="json")})
    yield from sorted(turns.values(), key=lambda r: r.get("seq", 0))
    lengths = rt.segment_stats.lengths(keys)
    heats = rt.segment_stats.heats(keys)
    for sid, payload in segments.items():
        yield {
            "type": "segment",
            "segment_id": sid,
            "theme": payload.get("theme"),
            "summary": payload.get("summary"),
            "keywords": payload.get("keywords", []),
            "pages": int(lengths.get(sid, 0)),
            "heat": heats.get(sid),
        }
    profile = rt.persona.get_profile(user_id)
    if profile:
        yield {"type": "profile", **profile.model_dump(mode="json")}
    knobs = user_knobs(rt.redis, keys).model_dump(exclude_none=True)
    if knobs:
        yield {"type": "settings", **knobs}
    for kind in ("user", "assistant"):
        for entry in _facts_from(rt, user_id, kind):
            yield {"type": "fact", **entry}


def inspect_user(rt: Runtime, user_id: str, facts: int = 20, pages: int = 50) -> dict[str, Any]:
    """What each tier holds, for `memoryos inspect` and the HTTP inspector (locally or over RPC): plain
    JSON. Pending turns and the `pages` most recent mid-term pages are listed, not only counted."""
    keys = rt.keys.user(user_id)
    waiting = state.buffered(rt.redis, keys) + [p for b in state.batches(rt.redis, keys) for p in b.pages]
    heats = rt.segment_stats.heats(keys)
    lengths = rt.segment_stats.lengths(keys)
    visits = rt.segment_stats.visits(keys)
    segments = [
        {
            "segment_id": hit.id,
            "heat": heats.get(hit.id, 0.0),
            "pages": int(lengths.get(hit.id, 0)),
            "visits": int(visits.get(hit.id, 0)),
            "source": hit.payload.get("source", ""),
            "theme": hit.payload.get("theme", ""),
            "summary": hit.payload.get("summary", ""),
            "keywords": hit.payload.get("keywords", []),
        }
        for hit in rt.segments.all_for_user(user_id)
    ]
    profile = rt.persona.get_profile(user_id)
    return {
        "user_id": user_id,
        "short_term": [p.model_dump(mode="json") for p in state.short_term(rt.redis, keys)],
        "pending_turns": len(waiting),
        "pending": [p.model_dump(mode="json") for p in waiting[:pages]],
        "dead_batches": len(state.batches(rt.redis, keys, dead=True)),
        "pages": rt.pages.count(user_id),
        "recent_pages": _recent_pages(rt, user_id, keys, pages),
        "segments": sorted(segments, key=lambda s: -s["heat"]),
        "profile": profile.render() if profile else None,
        "profile_detail": profile.model_dump(mode="json") if profile else None,
        "facts": {
            kind: [e.model_dump(mode="json") for e in rt.persona.list(kind, user_id, None)[-facts:]]
            for kind in ("user", "assistant")
        },
    }


_PAGE_FIELDS = ("turn_id", "seq", "segment_id", "theme", "user_input", "agent_response", "timestamp", "assistant_id")


def _recent_pages(rt: Runtime, user_id: str, keys: UserKeys, limit: int) -> list[dict[str, Any]]:
    """The newest mid-term pages, newest first, read from a bounded range of sequence numbers (pages
    stored more recently than the last `limit` published turns plus what Redis still holds)."""
    last_seq = int(rt.redis.hget(keys.state, "seq") or 0)
    window = limit + rt.settings.short_term_capacity + 4 * rt.settings.promotion_batch_size
    hits = rt.pages.since(user_id, max(0, last_seq - window))
    if len(hits) < limit and last_seq > window:  # a user whose own knobs hold more in Redis
        hits = rt.pages.all_for_user(user_id)
    return [{k: h.payload.get(k) for k in _PAGE_FIELDS} for h in reversed(hits[-limit:])]


def _facts_from(rt: Runtime, user_id: str, kind: str) -> list[dict[str, Any]]:
    """Facts drawn from this user's dialogue (assistant facts included, whoever they are scoped to)."""
    hits = rt.persona.drawn_from(user_id, kind)
    return [
        {
            "kind": kind,
            "entry_id": h.id,
            **{k: h.payload.get(k) for k in ("text", "date", "assistant_id", "created_at")},
            **rt.persona.timeline(h),  # with its history: when it held, what replaced it, who changed it
        }
        for h in hits
    ]


def _redis_keys(keys: UserKeys) -> list[str]:
    return [
        keys.stm,
        keys.buf,
        keys.state,
        keys.ids,
        keys.batches,
        keys.kick,
        keys.dead,
        keys.dead_persona,
        keys.persona_kick,
        keys.profile,
        *SegmentStats.user_keys(keys),
    ]


def _delete_vectors(rt: Runtime, user_id: str) -> dict[str, int]:
    return {
        "pages": rt.pages.delete_user(user_id),
        "segments": rt.segments.delete_user(user_id),
        **rt.persona.delete_user(user_id),
    }


def erase_user(rt: Runtime, user_id: str, *, wait: float | None = None) -> dict[str, int]:
    """Deletes every tier of a user; returns what was removed. Safe to run twice."""
    keys = rt.keys.user(user_id)
    rt.redis.incr(keys.epoch)
    pipe = rt.redis.pipeline(transaction=False)
    pipe.llen(keys.stm)
    pipe.llen(keys.buf)
    pipe.lrange(keys.batches, 0, -1)
    pipe.lrange(keys.dead, 0, -1)
    stm, buf, batch_ids, dead_ids = pipe.execute()
    batch_pages = sum(len(b.pages) for b in state.batches(rt.redis, keys) + state.batches(rt.redis, keys, dead=True))
    pipe = rt.redis.pipeline(transaction=False)
    for batch_id in [*batch_ids, *dead_ids]:
        pipe.delete(keys.batch(batch_id))
    for key in _redis_keys(keys):  # one DEL per key: a cluster pipeline takes no multi-key DEL
        pipe.delete(key)
    pipe.zrem(rt.keys.sweep.of(user_id), user_id)
    pipe.zrem(rt.keys.dead_index, user_id)
    pipe.zrem(rt.keys.users.of(user_id), user_id)
    pipe.execute()
    removed = {"short_term": stm, "pending": buf + batch_pages, **_delete_vectors(rt, user_id)}
    # Wait out in-flight work, then sweep the vector store again for anything it wrote meanwhile.
    deadline = time.monotonic() + (wait if wait is not None else 2 * rt.settings.lock_ttl)
    for lock_key in (keys.lock, keys.persona_lock):
        lock = UserLock(rt.redis, keys, rt.settings.lock_ttl, lock_key=lock_key)
        while not lock.acquire():
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        else:
            lock.release()
    again = _delete_vectors(rt, user_id)
    for name, count in again.items():
        removed[name] += count
    rt.redis.delete(*_redis_keys(keys))
    return removed

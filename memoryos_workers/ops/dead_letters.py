"""Dead letters: batches whose storage kept failing, and persona extractions that kept failing.

Pages of a dead batch stay readable in its Redis hash (retrieval and export see them); replay puts
the batch back at the head of the user's queue with fresh attempts, so order is kept.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from memoryos_workers.runtime import Runtime
from producers.wire import state


def list_dead(rt: Runtime, user_id: str | None = None) -> list[dict[str, Any]]:
    users = [user_id] if user_id else rt.redis.zrange(rt.keys.dead_index, 0, -1)
    out: list[dict[str, Any]] = []
    for user in users:
        keys = rt.keys.user(user)
        for batch in state.batches(rt.redis, keys, dead=True):
            out.append(
                {
                    "user_id": user,
                    "kind": "batch",
                    "id": batch.batch_id,
                    "attempts": batch.attempts,
                    "error": batch.error,
                    "turns": len(batch.pages),
                }
            )
        for index, raw in enumerate(rt.redis.lrange(keys.dead_persona, 0, -1)):
            record = json.loads(raw)
            out.append(
                {
                    "user_id": user,
                    "kind": "persona",
                    "id": str(index),
                    "attempts": record.get("attempts"),
                    "error": record.get("error", ""),
                    "turns": len(record.get("turn_ids", [])),
                }
            )
    return out


def replay(rt: Runtime, user_id: str) -> dict[str, int]:
    """Re-queue a user's dead batches (head of the queue, attempts reset) and persona extractions."""
    keys = rt.keys.user(user_id)
    dead_ids = rt.redis.lrange(keys.dead, 0, -1)
    pipe = rt.redis.pipeline(transaction=True)
    for batch_id in reversed(dead_ids):
        # "pending" re-runs the (idempotent) page upsert; a recorded analysis and plan are reused.
        pipe.hset(keys.batch(batch_id), mapping={"attempts": 0, "not_before": 0, "state": "pending"})
        pipe.lpush(keys.batches, batch_id)
    pipe.delete(keys.dead)
    pipe.execute()
    persona = rt.redis.lrange(keys.dead_persona, 0, -1)
    turn_ids = [t for raw in persona for t in json.loads(raw).get("turn_ids", [])]
    if turn_ids:
        hits = rt.pages.get(user_id, turn_ids)
        rt.pages.mark_persona(user_id, [h.payload["turn_id"] for h in hits], "pending")
        rt.segment_stats.unmark_analysed(
            keys, Counter(h.payload["segment_id"] for h in hits if h.payload.get("segment_id"))
        )
    rt.redis.delete(keys.dead_persona)
    rt.redis.zrem(rt.keys.dead_index, user_id)
    rt.pending.check(user_id)
    if turn_ids:
        rt.heat_refresh.request(user_id, keys)
    return {"batches": len(dead_ids), "persona_pages": len(turn_ids)}

"""Reading what Redis holds for a user: short-term, the buffer, pending and dead batches.

Readers see every turn that is not yet in the vector store, so nothing recent drops out of view
between publishing and promotion.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis

from producers.wire.keys import Sharded, UserKeys
from producers.wire.scripts import Scripts
from schemas.persona import UserProfile
from schemas.turns import Page


@dataclass(frozen=True)
class Batch:
    batch_id: str
    state: str
    pages: list[Page]
    attempts: int = 0
    not_before: float = 0.0
    error: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_hash(cls, batch_id: str, data: dict[str, str]) -> Batch:
        known = {"state", "pages", "attempts", "not_before", "error"}
        return cls(
            batch_id=batch_id,
            state=data.get("state", "pending"),
            pages=parse_pages(json.loads(data.get("pages", "[]"))),
            attempts=int(data.get("attempts", 0)),
            not_before=float(data.get("not_before", 0)),
            error=data.get("error", ""),
            extra={k: v for k, v in data.items() if k not in known},
        )


def parse_pages(raw: Iterable[str | dict]) -> list[Page]:
    return [Page.model_validate_json(item) if isinstance(item, str) else Page.model_validate(item) for item in raw]


def short_term(client: redis.Redis, keys: UserKeys) -> list[Page]:
    return parse_pages(client.lrange(keys.stm, 0, -1))


def buffered(client: redis.Redis, keys: UserKeys) -> list[Page]:
    return parse_pages(client.lrange(keys.buf, 0, -1))


def batches(client: redis.Redis, keys: UserKeys, *, dead: bool = False) -> list[Batch]:
    ids = client.lrange(keys.dead if dead else keys.batches, 0, -1)
    if not ids:
        return []
    pipe = client.pipeline(transaction=False)
    for batch_id in ids:
        pipe.hgetall(keys.batch(batch_id))
    return [Batch.from_hash(b, data) for b, data in zip(ids, pipe.execute(), strict=True) if data]


def read_batch(client: redis.Redis, keys: UserKeys, batch_id: str) -> Batch | None:
    data = client.hgetall(keys.batch(batch_id))
    return Batch.from_hash(batch_id, data) if data else None


def recent(scripts: Scripts, client: redis.Redis, keys: UserKeys) -> list[Page]:
    """Every turn of the user not yet in the vector store (short-term, buffered, in pending or dead
    batches), deduplicated by turn_id, in publish order; one atomic round trip."""
    return recent_and_zone(scripts, client, keys)[0]


def recent_and_zone(scripts: Scripts, client: redis.Redis, keys: UserKeys) -> tuple[list[Page], str | None]:
    """`recent`, and the user's own time zone knob (None when unset) read in the same round trip, for
    retrieval, which needs both."""
    return recent_reply(scripts.recent(keys=keys.script_keys(), client=client))


def recent_reply(reply: list) -> tuple[list[Page], str | None]:
    """The pages and time zone knob of a `recent` script reply (for callers that ran it in a pipeline)."""
    stm, buf, batch_pages, zone = reply
    raw: list[str | dict] = [*stm, *buf]
    for encoded in batch_pages:
        raw.extend(_json_list(encoded))
    pages: dict[str, Page] = {}
    for page in parse_pages(raw):
        pages.setdefault(page.turn_id, page)
    return sorted(pages.values(), key=lambda p: p.seq), (zone or None)


def _json_list(encoded: str) -> list[str | dict]:
    try:
        value = json.loads(encoded)
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def users(client: redis.Redis, index: Sharded, *, prefix: str = "", after: str | None = None, limit: int = 100,
          ) -> list[str]:
    """User ids from the user index (`Keys.users`) in id order: those starting with `prefix`, after the
    id `after` (a page's last id, for the next page), at most `limit`. O(log n + limit) per shard: each
    shard's first `limit` merged, in one pipelined round trip."""
    if after is not None and after >= prefix:  # never a range that starts before the prefix
        low = "(" + after
    else:
        low = "[" + prefix if prefix else "-"
    high = "(" + prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else "+"
    pipe = client.pipeline(transaction=False)
    for shard in index.names:
        pipe.zrangebylex(shard, low, high, start=0, num=limit)
    return sorted(user for page in pipe.execute() for user in page)[:limit]


# -- the last known profile -----------------------------------------------------------------------------
# A copy of the user's profile (UserProfile JSON) kept in Redis by the process that owns the vector store,
# written whenever the persona changes, so a retrieval that misses its deadline can still answer with it.


def save_profile_copy(client: redis.Redis, keys: UserKeys, profile_json: str) -> None:
    client.set(keys.profile, profile_json)


def profile_copy(raw: str | None) -> UserProfile | None:
    """The profile of a GET on keys.profile; None when absent or unreadable (a degraded answer never fails
    on it)."""
    if not raw:
        return None
    try:
        return UserProfile.model_validate_json(raw)
    except ValueError:
        return None

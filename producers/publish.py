"""Publishing turns: one Lua script per turn, no LLM and no embedding on this path."""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import redis
from pydantic import ValidationError

from producers.cluster import TRANSIENT_ERRORS
from producers.connection import redis_client
from producers.errors import MemoryOSError, RedisUnavailableError, redact_url
from producers.followup import KickFollowUp
from producers.replication import ReplicaBarrier, publish_keys
from producers.sender import TaskSender
from producers.tracing import SpanKind, continued, publish_span, task_headers, traced
from producers.wire.keys import Keys
from producers.wire.script_pipeline import ScriptPipeline
from producers.wire.scripts import PUBLISH_KEYS, Scripts
from schemas.settings import Settings, get_settings
from schemas.turns import SCHEMA_VERSION, Turn

TurnLike = Turn | Mapping[str, Any]
log = logging.getLogger("memoryos.producers")


# Turns of one user in one script call at most: a script holds Redis alone while it runs, so a bulk call of
# thousands of one user's turns is cut into calls of about a millisecond each.
TURNS_PER_SCRIPT = 100

PUBLISH_HINT = (
    "the turn may not be stored: publish it again with the same turn_id once Redis is back (duplicates are dropped)"
)


def validation_context(settings: Settings) -> dict[str, Any]:
    return {
        "max_text_chars": settings.max_text_chars,
        "max_metadata_bytes": settings.max_metadata_bytes,
        "timezone": settings.tz,
    }


def page_json(turn: Turn, published_at: float) -> str:
    """The stored page without its seq, which the script prepends (so Lua never re-encodes JSON)."""
    return json.dumps(
        {
            "user_id": turn.user_id,
            "turn_id": turn.turn_id,
            "assistant_id": turn.assistant_id,
            "user_input": turn.user_input,
            "agent_response": turn.agent_response,
            "timestamp": turn.timestamp.isoformat(),
            "metadata": turn.metadata,
            "published_at": published_at,
            "schema_version": SCHEMA_VERSION,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def script_calls(turns: Sequence[Turn]) -> list[tuple[str, list[Turn]]]:
    """The turns grouped by user, each user's in the order given, at most TURNS_PER_SCRIPT a group: one
    publish script per group, so a bulk call costs a script per user rather than per turn."""
    by_user: dict[str, list[Turn]] = {}
    for turn in turns:
        by_user.setdefault(turn.user_id, []).append(turn)
    return [(user, group[start : start + TURNS_PER_SCRIPT])
            for user, group in by_user.items() for start in range(0, len(group), TURNS_PER_SCRIPT)]


class Publisher:
    """Created once per process (see `default_publisher`); safe to share between threads."""

    def __init__(
        self,
        settings: Settings | None = None,
        client: redis.Redis | None = None,
        sender: TaskSender | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.redis = client or redis_client(self.settings.redis_url)
        self.keys = Keys.for_settings(self.settings)
        self.scripts = Scripts.register(self.redis)
        self.sender = sender or TaskSender(self.settings)
        s = self.settings
        self.replicas = ReplicaBarrier(self.redis, s.key_prefix, s.publish_min_replicas, s.publish_replica_timeout)
        self._context = validation_context(self.settings)
        # The key names of a user's publish script, built once per user rather than once per publish.
        self._publish_keys = functools.lru_cache(maxsize=4096)(self._user_publish_keys)
        self._followup: KickFollowUp | None = None
        self._followup_lock = threading.Lock()

    def _user_publish_keys(self, user_id: str) -> tuple[str, ...]:
        return tuple(self.keys.user(user_id).script_keys()[:PUBLISH_KEYS])

    # -- validation -------------------------------------------------------------------------
    def make_turn(self, data: TurnLike) -> Turn:
        if isinstance(data, Turn):
            data = data.model_dump()
        if not isinstance(data, Mapping):
            raise TypeError(f"a turn must be a schemas.Turn or a dict, not {type(data).__name__}")
        return Turn.model_validate(dict(data), context=self._context)

    # -- publishing -------------------------------------------------------------------------
    def publish(self, turn: TurnLike) -> str:
        return self.publish_many([turn])[0]

    def publish_many(self, turns: Iterable[TurnLike]) -> list[str]:
        """Validates every turn before storing any, then stores them in one pipelined round trip."""
        return self.store(self._validate_all(list(turns)))

    @traced("memoryos.publish", lambda self, validated: publish_span(validated), kind=SpanKind.PRODUCER)
    def store(self, validated: Sequence[Turn]) -> list[str]:
        """Stores turns that `make_turn` made (as the HTTP API does, to name each invalid turn itself)
        in one pipelined round trip; their turn_ids in order."""
        if not validated:
            return []
        now = time.time()
        calls = script_calls(validated)
        s = self.settings
        params = (s.short_term_capacity, s.promotion_batch_size, repr(now), s.dedupe_window,
                  int(s.kick_stale_after * 1000), SCHEMA_VERSION)
        with self.redis_errors():
            pipe = ScriptPipeline(self.redis)
            for user_id, turns in calls:
                pairs = [part for turn in turns for part in (turn.turn_id, page_json(turn, now))]
                pipe.run(self.scripts.publish, self._publish_keys(user_id), (*params, *pairs))
            users = list(dict.fromkeys(user_id for user_id, _ in calls))
            # Re-asserted on every publish (an upper bound; LT keeps an earlier due), so an index entry
            # lost to a failure between two commands heals with the user's next turn. Both indexes are
            # sharded (keys.py): one command per shard the call's users fall in.
            for shard, members in self.keys.sweep.group(users).items():
                pipe.pipe.zadd(shard, dict.fromkeys(members, now + s.promotion_max_wait), lt=True)
            for shard, members in self.keys.users.group(users).items():
                pipe.pipe.zadd(shard, dict.fromkeys(members, 0))  # the user index
            replies = pipe.execute()
            self.replicas.wait(publish_keys(self.keys, users))  # MEMORYOS_PUBLISH_MIN_REPLICAS, or nothing
        self._after_publish([user_id for user_id, _ in calls], replies[: len(calls)])
        return [turn.turn_id for turn in validated]

    def _validate_all(self, turns: Sequence[TurnLike]) -> list[Turn]:
        out: list[Turn] = []
        for index, turn in enumerate(turns):
            try:
                out.append(self.make_turn(turn))
            except ValidationError as exc:
                if len(turns) == 1:
                    raise
                raise ValueError(f"turn #{index} is invalid; nothing was published:\n{exc}") from exc
        return out

    def _after_publish(self, users: Sequence[str], replies: Sequence[Any]) -> None:
        """The turns are stored; telling workers about a batch that is ready is left to a background thread
        (see followup.py), so it never sits in the publish: the publish returns after its one round trip."""
        kicks = [user for user, reply in zip(users, replies, strict=True) if int(reply[1])]
        if kicks:
            self.followup.add(kicks, task_headers())  # the promote task joins this publish's trace

    def kick(self, user_ids: Sequence[str], traces: Mapping[str, Mapping[str, str]] | None = None,
             now: float | None = None) -> None:
        """Index users for the sweep at the time a lost kick goes stale, then send their promote tasks
        (a failed send is logged; the sweep re-sends it then), each in the trace context of the publish
        that caused it (`traces`, by user). Raises RedisError when the index update fails, since then only
        the later promotion_max_wait entry would find them."""
        due = (time.time() if now is None else now) + self.settings.kick_stale_after
        for shard, users in self.keys.sweep.group(user_ids).items():
            self.redis.zadd(shard, dict.fromkeys(users, due), lt=True)
        for user_id in user_ids:
            with continued((traces or {}).get(user_id)):
                self.sender.promote(user_id)

    @property
    def followup(self) -> KickFollowUp:
        with self._followup_lock:
            if self._followup is None:
                self._followup = KickFollowUp(self.kick, give_up_after=self.settings.promotion_max_wait)
            return self._followup

    def redis_errors(self, hint: str = PUBLISH_HINT) -> Any:
        return _RedisErrors(self.settings.redis_url, hint)


class _RedisErrors:
    """Turns redis-py errors into ones that say what happened and what to do."""

    def __init__(self, url: str, hint: str) -> None:
        self.url = redact_url(url)
        self.hint = hint

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        if isinstance(exc, redis.AuthenticationError):
            raise RedisUnavailableError(
                f"Redis at {self.url} rejected the credentials ({exc}); check the password in MEMORYOS_REDIS_URL; "
                + self.hint
            ) from exc
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, *TRANSIENT_ERRORS)):
            raise RedisUnavailableError(f"Redis at {self.url} is unreachable ({exc}); {self.hint}") from exc
        if isinstance(exc, redis.ResponseError) and "OOM" in str(exc):
            raise MemoryOSError(
                f"Redis at {self.url} is out of memory ({exc}); the turn was not stored. Raise maxmemory "
                "or add workers: pending turns leave Redis once workers promote them"
            ) from exc
        return False


_default: Publisher | None = None
_default_lock = threading.Lock()


def default_publisher() -> Publisher:
    global _default
    with _default_lock:
        if _default is None:
            _default = Publisher()
        return _default


def configure(settings: Settings | None = None, client: redis.Redis | None = None) -> Publisher:
    """Replace the module-level publisher, e.g. with explicit settings instead of the environment."""
    global _default
    with _default_lock:
        _default = Publisher(settings, client)
        return _default


def publish_turn(
    user_id: str,
    user_input: str,
    agent_response: str,
    *,
    assistant_id: str | None = None,
    timestamp: datetime | str | None = None,
    turn_id: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> str:
    """Store one turn in the user's short-term memory; returns its turn_id once Redis has it."""
    data: dict[str, Any] = {
        "user_id": user_id,
        "user_input": user_input,
        "agent_response": agent_response,
        "assistant_id": assistant_id,
        "timestamp": timestamp,
        "metadata": metadata,
    }
    if turn_id is not None:
        data["turn_id"] = turn_id
    return default_publisher().publish(data)


def publish_turns(turns: Iterable[TurnLike]) -> list[str]:
    """Bulk publish (one pipelined round trip); returns the turn_ids in the order given."""
    return default_publisher().publish_many(turns)

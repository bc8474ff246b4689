"""Publishing turns: one Lua script per turn, no LLM and no embedding on this path."""

from __future__ import annotations

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
from producers.tracing import SpanKind, publish_span, traced
from producers.wire.keys import Keys
from producers.wire.scripts import Scripts
from schemas.settings import Settings, get_settings
from schemas.turns import SCHEMA_VERSION, Turn

TurnLike = Turn | Mapping[str, Any]
log = logging.getLogger("memoryos.producers")


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
        self._followup: KickFollowUp | None = None
        self._followup_lock = threading.Lock()

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
        with self.redis_errors():
            pipe = self.redis.pipeline(transaction=False)
            for turn in validated:
                self._run_publish(turn, now, pipe)
            for shard, users in self.keys.users.group(t.user_id for t in validated).items():
                pipe.zadd(shard, dict.fromkeys(users, 0))  # the user index
            results = pipe.execute()
            self._after_publish(validated, results[0 : 2 * len(validated) : 2], now)
            self.replicas.wait(publish_keys(self.keys, (t.user_id for t in validated)))  # MIN_REPLICAS, or nothing
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

    def _run_publish(self, turn: Turn, now: float, pipe: Any) -> None:
        s = self.settings
        self.scripts.publish(
            keys=self.keys.user(turn.user_id).script_keys(),
            args=[
                turn.turn_id, page_json(turn, now), s.short_term_capacity, s.promotion_batch_size,
                repr(now), s.dedupe_window, int(s.kick_stale_after * 1000), SCHEMA_VERSION,
            ],
            client=pipe,
        )
        # Re-asserted on every publish (an upper bound; LT keeps an earlier due), so an index entry
        # lost to a failure between two commands heals with the user's next turn.
        pipe.zadd(self.keys.sweep.of(turn.user_id), {turn.user_id: now + s.promotion_max_wait}, lt=True)

    def _after_publish(self, turns: Sequence[Turn], results: Sequence[Any], now: float) -> None:
        """The turns are stored; what is left is telling workers. When that fails it is retried in the
        background (see followup.py) and the publish still returns: its turns are safe."""
        kicks = list(dict.fromkeys(turn.user_id for turn, result in zip(turns, results, strict=True) if int(result[3])))
        if not kicks:
            return
        try:
            self.kick(kicks, now)
        except redis.RedisError as exc:
            log.warning("turns stored, but Redis failed before the promote kick (%s); retrying it in the "
                        "background", type(exc).__name__)
            self.followup.add(kicks)

    def kick(self, user_ids: Sequence[str], now: float | None = None) -> None:
        """Index users for the sweep at the time a lost kick goes stale, then send their promote tasks
        (a failed send is logged; the sweep re-sends it then). Raises RedisError when the index update
        fails, since then only the later promotion_max_wait entry would find them."""
        due = (time.time() if now is None else now) + self.settings.kick_stale_after
        for shard, users in self.keys.sweep.group(user_ids).items():
            self.redis.zadd(shard, dict.fromkeys(users, due), lt=True)
        for user_id in user_ids:
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

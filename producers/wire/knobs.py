"""Reading and writing a user's own settings (schemas.knobs) in Redis."""

from __future__ import annotations

import redis

from producers.wire.keys import UserKeys
from schemas.knobs import UserKnobs
from schemas.settings import Settings


def set_user_knobs(client: redis.Redis, keys: UserKeys, knobs: UserKnobs) -> None:
    """Replaces the user's knobs (an unset knob falls back to the deployment's value)."""
    pipe = client.pipeline(transaction=True)
    pipe.delete(keys.knobs)
    values = knobs.to_redis()
    if values:
        pipe.hset(keys.knobs, mapping=values)
    pipe.execute()


def user_knobs(client: redis.Redis, keys: UserKeys) -> UserKnobs:
    return UserKnobs.from_redis(client.hgetall(keys.knobs))


def user_settings(client: redis.Redis, keys: UserKeys, settings: Settings) -> Settings:
    """What workers use for one user's work: one HGETALL, read once per drain or extraction."""
    return user_knobs(client, keys).apply(settings)

"""The per-user Lua scripts, registered once per Redis client.

redis-py's Script objects run EVALSHA and reload on NOSCRIPT, also inside pipelines, so a Redis
restart or failover never surfaces as an error here.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import redis
from redis.commands.core import Script

_PER_USER = ("publish", "check", "batch_done", "batch_update", "batch_failed", "segment_apply", "recent",
             "backlog")
_GLOBAL = ("cas_remove", "token_budget", "token_calibration")  # single-key scripts without the per-user prelude
# publish.lua touches only the first keys of UserKeys.script_keys(): on the hottest call every argument
# counts (redis-py encodes each one in Python), so a publish passes these and no more.
PUBLISH_KEYS = 8


def lua_source(name: str) -> str:
    """A script's text as Redis runs it (every Lua script of the project lives in lua/)."""
    folder = resources.files("producers.wire") / "lua"
    body = (folder / f"{name}.lua").read_text(encoding="utf-8")
    if name in _GLOBAL:
        return body
    return (folder / "common.lua").read_text(encoding="utf-8") + "\n" + body


@dataclass(frozen=True)
class Scripts:
    publish: Script
    check: Script
    batch_done: Script
    batch_update: Script
    batch_failed: Script
    segment_apply: Script
    recent: Script
    backlog: Script
    cas_remove: Script

    @classmethod
    def register(cls, client: redis.Redis) -> Scripts:
        return cls(**{name: client.register_script(lua_source(name)) for name in _PER_USER + ("cas_remove",)})

"""A pipeline that runs Lua scripts by EVALSHA alone, loading a script only when Redis says it lacks it.

redis-py's Script, queued on a pipeline, sends SCRIPT EXISTS for its scripts before every execute: one more
round trip on each call, which for a publish doubled the cost of the call. Redis keeps a loaded script until
it restarts, fails over to a replica that never loaded it, or is told SCRIPT FLUSH, and only then answers an
EVALSHA with NOSCRIPT. So here the scripts are assumed loaded; a NOSCRIPT reply loads the script (SCRIPT LOAD)
and runs again exactly the commands Redis refused, in their order. A refused command did nothing, and the
rest of the pipeline is not sent again, so nothing runs twice.

The one order Redis cannot keep for us: when a flush lands between two queued scripts and another client
loads the script again before the second one runs, the first is refused and the second is not, so the
retry runs the first after the second. Callers that need an order between two scripts (the turns of one
user) put them into one script call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

# Reloads in a row before giving up: each needs another SCRIPT FLUSH to land within one round trip.
MAX_RELOADS = 3


class ScriptPipeline:
    """A non-transactional pipeline for scripts (`run`) and plain commands (`pipe`); one round trip in the
    common case. Not shared between threads, like any redis-py pipeline."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.pipe = client.pipeline(transaction=False)
        self._scripts: dict[int, tuple[Script, int, tuple[Any, ...]]] = {}

    def run(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> None:
        """Queues `script`; its reply is at this command's position in execute()'s list."""
        self._scripts[len(self.pipe)] = (script, len(keys), (*keys, *args))
        self.pipe.evalsha(script.sha, len(keys), *keys, *args)

    def execute(self) -> list[Any]:
        """Every reply in queue order. Raises the first error other than a NOSCRIPT recovered here (and
        redis-py's ConnectionError or TimeoutError when Redis is unreachable)."""
        replies = self.pipe.execute(raise_on_error=False)
        refused = self._refused(replies, self._scripts)
        reloads = 0
        while refused and reloads < MAX_RELOADS:
            reloads += 1
            for script in {id(self._scripts[i][0]): self._scripts[i][0] for i in refused}.values():
                script.sha = self.client.script_load(script.script)
            retry = self.client.pipeline(transaction=False)
            for i in refused:
                script, numkeys, args = self._scripts[i]
                retry.evalsha(script.sha, numkeys, *args)
            for i, reply in zip(refused, retry.execute(raise_on_error=False), strict=True):
                replies[i] = reply
            refused = self._refused(replies, {i: self._scripts[i] for i in refused})
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    @staticmethod
    def _refused(replies: Sequence[Any], positions: dict[int, Any]) -> list[int]:
        return [i for i in sorted(positions) if isinstance(replies[i], NoScriptError)]

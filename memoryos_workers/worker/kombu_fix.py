"""A workaround for a kombu bug that makes a Celery worker exit when Redis goes away (issue 17).

kombu's Redis `Channel.close()` first reads the reply of the BRPOP the channel has in flight (added
by celery/kombu#1733, so a warm shutdown does not lose a message BRPOP already popped). When Redis
has died, that read raises a connection error *before* the channel is marked closed and its unacked
messages are restored. The Celery consumer, after a connection loss, calls `connection.collect()`
(which swallows that error, then sets `transport.client = None`) and then `connection.close()`,
which closes the same half-closed channel again: its restore builds a new connection pool from
`transport.client`, and `_connparams` raises AttributeError("'NoneType' object has no attribute
'hostname'"). That is not a connection error, so the worker takes it for an unrecoverable error and
exits (the same family as celery/kombu#970 and celery/kombu#582). Seen with kombu 5.7.0, the latest
release (celery 5.7.0, redis-py 8.1.0), whenever Redis dies while a task is unacked and a BRPOP is out.

The workaround reads the in-flight BRPOP reply itself and treats a dead connection like "no reply"
(there is nothing left to read from a closed socket), so kombu's own close then runs to the end on
the first call: the channel is closed, and the restore of unacked messages fails with a connection
error that the caller ignores. Those messages stay in Redis's unacked hash, where kombu puts them
back after the visibility timeout; nothing waits for them, because our batches keep their state in
Redis and the sweep re-sends a due batch's kick (DESIGN: "the truth lives in Redis").

Remove this module when kombu's `Channel.close` catches connection errors around that read.
"""

from __future__ import annotations

import logging
from queue import Empty
from typing import Any

from kombu.transport import redis as kombu_redis

log = logging.getLogger("memoryos.kombu_fix")

_MARK = "_memoryos_tolerates_dead_brpop"


def install() -> bool:
    """Wraps kombu's Redis `Channel.close` once per process; False when this kombu has no such read
    (then the bug cannot happen the same way and kombu's close is left alone)."""
    channel = kombu_redis.Channel
    if getattr(channel.close, _MARK, False):
        return True
    if not (hasattr(channel, "_brpop_read") and hasattr(channel, "_in_poll")):
        log.warning("kombu %s: Redis Channel has no _brpop_read/_in_poll; workaround not installed",
                    _kombu_version())
        return False
    original = channel.close

    def close(self: Any) -> None:
        _drain_inflight_brpop(self)
        original(self)

    close.__doc__ = original.__doc__
    setattr(close, _MARK, True)
    channel.close = close
    return True


def _drain_inflight_brpop(channel: Any) -> None:
    """The read kombu's close does first, except that a dead connection ends it instead of the close
    (`_brpop_read` clears `_in_poll` whatever happens, so kombu's close does not read again)."""
    if not channel._in_poll:
        return
    try:
        channel._brpop_read()
    except Empty:
        pass
    except channel.connection_errors as exc:
        log.info("broker connection gone while closing a channel (%s); closing it anyway", type(exc).__name__)


def _kombu_version() -> str:
    import kombu

    return str(getattr(kombu, "__version__", "?"))

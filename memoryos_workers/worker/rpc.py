"""The worker side of producers' RPC reads: the answer goes straight into the caller's reply list.

Why not Celery's result backend: storing a result there costs a SETEX, a PUBLISH to the caller's
subscription, the caller's GET and a DEL afterwards; a reply list is one LPUSH (with its EXPIRE in the
same round trip) and the caller's BLPOP, which is what keeps RPC within a few milliseconds of in-process
retrieval. The list expires after `result_expires`, so an answer nobody waits for any more (the caller
timed out) cannot accumulate in a Redis that runs with noeviction.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from producers.errors import FactsBusy
from producers.wire.contract import REPLY_ERROR, REPLY_INVALID, REPLY_OK
from producers.wire.keys import Keys
from producers.wire.rpc import busy_reply

log = logging.getLogger("memoryos.rpc")

_REQUEST_ID = re.compile(r"[0-9a-f]{32}")


class RPCAnswer:
    """Computes an RPC answer and hands it to the caller; errors reach the caller as messages."""

    def __init__(self, client: object, keys: Keys, expires: int) -> None:
        self.redis = client
        self.keys = keys
        self.expires = expires

    def reply_key(self, request_id: object) -> str | None:
        """Only lists under this deployment's reply prefix: a task never writes a key it was handed."""
        if isinstance(request_id, str) and _REQUEST_ID.fullmatch(request_id):
            return self.keys.reply(request_id)
        log.error("ignored an RPC reply id that is not 32 hex digits: %r", request_id)
        return None

    def answer(self, request_id: object, compute: Callable[[], str]) -> None:
        """`compute` returns the answer as JSON text; a ValueError is the caller's bad input, a FactsBusy a
        retryable refusal that the caller raises again as FactsBusy with its retry_after."""
        key = self.reply_key(request_id)
        try:
            frame = REPLY_OK + compute()
        except FactsBusy as exc:
            frame = busy_reply(exc)
        except ValueError as exc:
            frame = REPLY_INVALID + str(exc)
        except Exception as exc:
            log.exception("RPC read failed")
            frame = f"{REPLY_ERROR}{type(exc).__name__}: {exc}"
        if key is None:
            return
        pipe = self.redis.pipeline(transaction=True)  # type: ignore[attr-defined]
        pipe.lpush(key, frame)
        pipe.expire(key, self.expires)
        pipe.execute()

"""The per-user work lock: one worker at a time per user, with a fencing token.

A short TTL bounds how long a crashed worker blocks its user; a heartbeat thread renews it while
work runs. The token is a per-user counter, and the Redis writes that move a batch forward are Lua
scripts that compare it with the lock's value, so a worker that lost its lock (paused past the TTL)
cannot overwrite the newer holder's progress.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

import redis
from redis.lock import Lock

from producers.wire.keys import UserKeys

log = logging.getLogger("memoryos.locks")


class UserLock:
    def __init__(self, client: redis.Redis, keys: UserKeys, ttl: float, lock_key: str | None = None) -> None:
        self._client = client
        self._keys = keys
        self._ttl = ttl
        self._name = lock_key or keys.lock
        self._lock = Lock(client, self._name, timeout=ttl, blocking=False, thread_local=False)
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.token: str | None = None
        self.lost = False

    def acquire(self) -> bool:
        token = str(self._client.incr(self._keys.fence))
        if not self._lock.acquire(token=token):
            return False
        self.token = token
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name=f"lock-heartbeat:{self._name}", daemon=True)
        self._beat.start()
        return True

    def _heartbeat(self) -> None:
        while not self._stop.wait(self._ttl / 3):
            try:
                self._lock.reacquire()
            except Exception as exc:  # noqa: BLE001 - a lost lock is detected by the fenced writes
                self.lost = True
                log.warning("lost the lock %s (%s)", self._name, type(exc).__name__)
                return

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        try:
            self._lock.release()
        except Exception:  # noqa: BLE001 - expired or taken over: nothing of ours to release
            pass
        self.token = None

    def __enter__(self) -> UserLock:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.token is not None:
            self.release()

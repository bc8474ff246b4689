"""The memory behind the MCP tools: one `Memoryos` per process, opened in a background thread when the
server starts, so the client's handshake never waits for the model to load.

On the embedded default that memory runs its own in-process worker; with MEMORYOS_QDRANT_URL and
MEMORYOS_EXTERNAL_WORKERS=1 the deployment's workers do the background work (`Memoryos` decides). A
call for another user gets `Memoryos.for_user()`: the same runtime, worker and store.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from memoryos_workers.apps.mcp.sdk import ToolError

if TYPE_CHECKING:
    from memoryos_workers.apps.memoryos import Memoryos

log = logging.getLogger("memoryos.mcp")

STARTUP_TIMEOUT = 180.0


class MemoryService:
    """Opens the memory once, reports a failed opening to every call (and retries on the next), closes it."""

    def __init__(self, startup_timeout: float = STARTUP_TIMEOUT) -> None:
        self.startup_timeout = startup_timeout
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._memoryos: Memoryos | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        """Idempotent: the first caller starts the opening; later callers find it started."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._open, name="memoryos-mcp-start", daemon=True)
            self._thread.start()

    def _open(self) -> None:
        try:
            from memoryos_workers.apps.memoryos import Memoryos

            mos = Memoryos.from_settings()
            self._memoryos = mos
            s = mos.settings
            log.info(
                "memory ready: user %s, assistant %s, store %s, workers %s",
                mos.user_id, mos.assistant_id, s.qdrant_url or s.data_dir,
                "in-process" if mos.runs_worker else "external",
            )  # fmt: skip
        except BaseException as exc:  # reported to every call, and logged once here
            self._error = exc
            log.error("memory could not start: %s: %s", type(exc).__name__, exc)
        finally:
            self._ready.set()

    def memoryos(self, user_id: str | None = None, assistant_id: str | None = None) -> Memoryos:
        """The process's memory, about `user_id` (and `assistant_id`) when given (same runtime, worker and
        store)."""
        self.start()
        if not self._ready.wait(self.startup_timeout):
            raise ToolError(f"memory is still starting after {self.startup_timeout:.0f} s; try again shortly")
        error = self._error
        if error is not None:
            with self._lock:  # the next call tries again (say, once another process has let go of the store)
                if self._error is error:
                    self._thread, self._error = None, None
                    self._ready.clear()
            raise ToolError(f"memory is unavailable: {type(error).__name__}: {error}")
        assert self._memoryos is not None
        return self._memoryos.for_user(user_id, assistant_id) if user_id else self._memoryos

    def close(self) -> None:
        """Stop the in-process worker, then flush and close the store (the next opener finds it clean)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(30)
        mos, self._memoryos = self._memoryos, None
        if mos is None:
            return
        from memoryos_workers.apps.memoryos import shutdown

        try:
            mos.close()
            shutdown()
        except Exception:  # noqa: BLE001 - shutting down: report, never hang or mask the exit
            log.exception("error while closing the memory")

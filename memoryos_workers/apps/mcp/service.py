"""The memory behind the MCP tools: the process's `Memory` (memoryos_workers.interface.shared_memory),
opened in a background thread when the server starts, so the client's handshake never waits for the model
to load. Whether it reads in this process or over RPC, and whether an in-process worker runs, is decided
there, from Settings, as for every other app.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from memoryos_workers.apps.mcp.sdk import ToolError

if TYPE_CHECKING:
    from memoryos_workers.interface import Memory

log = logging.getLogger("memoryos.mcp")

STARTUP_TIMEOUT = 180.0


class MemoryService:
    """Opens the memory once, reports a failed opening to every call (and retries on the next), closes it."""

    def __init__(self, startup_timeout: float = STARTUP_TIMEOUT) -> None:
        self.startup_timeout = startup_timeout
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._memory: Memory | None = None
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
            from memoryos_workers.interface import shared_memory
            from schemas.settings import get_settings

            memory = shared_memory(get_settings())
            self._memory = memory
            s = memory.settings
            log.info("memory ready: default user %s, assistant %s, store %s, reads %s, workers %s", s.user_id,
                     s.assistant_id, s.qdrant_url or s.data_dir, memory.mode, memory.describe()["workers"])
        except BaseException as exc:  # reported to every call, and logged once here
            self._error = exc
            log.error("memory could not start: %s: %s", type(exc).__name__, exc)
        finally:
            self._ready.set()

    def memory(self) -> Memory:
        """The process's memory, once open; a ToolError saying why while it cannot be."""
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
        assert self._memory is not None
        return self._memory

    def close(self) -> None:
        """Stop the in-process worker, then flush and close the store (the next opener finds it clean)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(30)
        memory, self._memory = self._memory, None
        if memory is None:
            return
        from memoryos_workers.interface import close_shared

        close_shared()  # logs, never raises: shutting down must not hang or mask the exit

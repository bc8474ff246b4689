"""A Celery worker inside the current process: the embedded setup (demo, Memoryos class, MCP, and CLI
commands that wait on workers when none answers).

The embedded vector store belongs to one process, so the worker runs as threads of the process
that opened it. It is a real Celery worker consuming the real queues; only its home differs.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any

from celery.worker import WorkController

from memoryos_workers.runtime import Runtime, get_runtime
from producers.wire.contract import ALL_QUEUES

log = logging.getLogger("memoryos.embedded")


class _ReadyWorker(WorkController):
    """Signals when the consumer is ready, so callers do not publish into a worker still starting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.ready_event = threading.Event()
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer: Any) -> None:
        super().on_consumer_ready(consumer)
        self.ready_event.set()


class EmbeddedWorker:
    def __init__(self, runtime: Runtime | None = None, *, concurrency: int = 4, loglevel: str = "WARNING") -> None:
        self.runtime = runtime or get_runtime()
        self.concurrency = concurrency
        self.loglevel = loglevel
        self._worker: _ReadyWorker | None = None
        self._thread: threading.Thread | None = None
        self._stop_sweeping = threading.Event()
        self._sweeper: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> EmbeddedWorker:
        from memoryos_workers.worker.celery_app import app

        self.runtime.warm_up()
        app.finalize()
        self._worker = _ReadyWorker(
            app=app,
            pool="threads",
            concurrency=self.concurrency,
            queues=list(ALL_QUEUES),
            loglevel=self.loglevel,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            ready_callback=None,
        )
        self._thread = threading.Thread(target=self._worker.start, name="memoryos-embedded-worker", daemon=True)
        self._thread.start()
        if not self._worker.ready_event.wait(timeout):
            raise TimeoutError(f"the embedded worker did not start within {timeout:.0f} s; is Redis reachable?")
        return self.start_sweeper()

    def start_sweeper(self) -> EmbeddedWorker:
        self._stop_sweeping.clear()
        self._sweeper = threading.Thread(target=self._sweep_forever, name="memoryos-embedded-sweep", daemon=True)
        self._sweeper.start()
        return self

    def _sweep_forever(self) -> None:
        """The embedded setup's beat: no separate process runs, so lost kicks, due batch retries and due
        persona retries are found here (the same sweep as `memoryos beat`; a second one is harmless)."""
        pending = self.runtime.pending
        while not self._stop_sweeping.wait(self.runtime.settings.sweep_interval):
            try:
                pending.sweep()
            except Exception as exc:  # noqa: BLE001 - Redis away: the next round tries again
                log.warning("embedded sweep failed (%s: %s); retrying in %g s", type(exc).__name__, exc,
                            self.runtime.settings.sweep_interval)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop_sweeping.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout)
            self._sweeper = None
        if self._worker is None:
            return
        self._worker.stop(in_sighandler=False)
        if self._thread is not None:
            self._thread.join(timeout)
        self._worker = None

    def __enter__(self) -> EmbeddedWorker:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def answering_workers(timeout: float = 1.0, limit: int | None = None) -> list[str]:
    """Names of this deployment's workers (embedded ones included) that answer a ping on Celery's control
    channel within `timeout` (the channel lives under the deployment's key prefix); with `limit`, returns
    as soon as that many have answered. Broker errors propagate: the caller says what to do."""
    from memoryos_workers.worker.celery_app import app

    replies = app.control.ping(timeout=timeout, limit=limit)
    return sorted(name for reply in replies for name in reply)

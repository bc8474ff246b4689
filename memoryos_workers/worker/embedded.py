"""A Celery worker inside the current process: the embedded setup (demo, Memoryos class, MCP, and CLI
commands that wait on workers when none answers).

The embedded vector store belongs to one process, so the worker runs as threads of the process
that opened it. It is a real Celery worker consuming the real queues; only its home differs.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType
from typing import Any

from celery.worker import WorkController

from memoryos_workers.runtime import Runtime, get_runtime
from producers.wire.contract import ALL_QUEUES

log = logging.getLogger("memoryos.embedded")


class _ReadyWorker(WorkController):
    """Signals when the consumer is ready, so callers do not publish into a worker still starting."""

    # It runs inside another application's process (the library's, `memoryos serve`'s): it does not freeze
    # that process's heap when ready (memoryos_workers/heap.py).
    owns_process = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.ready_event = threading.Event()
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer: Any) -> None:
        super().on_consumer_ready(consumer)
        self.ready_event.set()


class EmbeddedWorker:
    """The Celery worker of an embedded setup, run by a supervisor thread that starts a new one whenever
    it stops without being asked to. Nothing else watches it: a worker process has its process manager
    (systemd, Kubernetes, compose), but here a dead worker would leave every published turn pending,
    with nothing said on the publishing side."""

    #: A worker that ran this long before it stopped is restarted after `restart_delay` again.
    HEALTHY_RUN = 60.0

    def __init__(
        self,
        runtime: Runtime | None = None,
        *,
        concurrency: int = 4,
        loglevel: str = "WARNING",
        restart_delay: float = 1.0,
        restart_delay_max: float = 30.0,
    ) -> None:
        self.runtime = runtime or get_runtime()
        self.concurrency = concurrency
        self.loglevel = loglevel
        self.restart_delay = restart_delay
        self.restart_delay_max = restart_delay_max
        self.restarts = 0
        self._worker: _ReadyWorker | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._stop_sweeping = threading.Event()
        self._sweeper: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> EmbeddedWorker:
        from memoryos_workers.worker.celery_app import app

        self.runtime.warm_up()
        app.finalize()
        self._stopping.clear()
        first = self._new_worker(app)
        self._thread = threading.Thread(
            target=self._supervise, args=(app, first), name="memoryos-embedded-worker", daemon=True
        )
        self._thread.start()
        if not first.ready_event.wait(timeout):
            self.stop(timeout=5)  # or it would retry the broker for ever in the background
            raise TimeoutError(f"the embedded worker did not start within {timeout:.0f} s; is Redis reachable?")
        return self.start_sweeper()

    @property
    def alive(self) -> bool:
        """True while a Celery worker runs (or is being restarted) in this process."""
        return self._thread is not None and self._thread.is_alive()

    def _new_worker(self, app: Any) -> _ReadyWorker:
        with self._lock:
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
            return self._worker

    def _supervise(self, app: Any, first: _ReadyWorker) -> None:
        """Runs the worker, then a new one each time it stops unasked (Celery has already logged why,
        as "Unrecoverable error"), after a delay that doubles while restarts keep failing fast."""
        delay = self.restart_delay
        worker: _ReadyWorker | None = first
        while True:
            began = time.monotonic()
            exitcode = self._run(app, worker)
            if self._stopping.is_set():
                return
            if time.monotonic() - began >= self.HEALTHY_RUN:
                delay = self.restart_delay
            log.error("the embedded Celery worker stopped unexpectedly (exit code %s); restarting it in %g s",
                      exitcode, delay)
            if self._stopping.wait(delay):
                return
            delay = min(2 * delay, self.restart_delay_max)
            with self._lock:
                if self._stopping.is_set():
                    return
                self.restarts += 1
            worker = None
            log.warning("restarting the embedded Celery worker (restart %d)", self.restarts)

    def _run(self, app: Any, worker: _ReadyWorker | None) -> object:
        """One worker's life; returns its exit code. Celery's start() catches what ends a worker; this
        also covers what it lets through, so the supervisor itself never dies silently."""
        try:
            worker = worker or self._new_worker(app)
            worker.start()  # returns once the worker has stopped, asked to or not
            return worker.exitcode
        except Exception as exc:  # noqa: BLE001 - logged, and the supervisor restarts the worker
            log.exception("the embedded Celery worker failed")
            return f"{type(exc).__name__}: {exc}"

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
        self._stopping.set()
        self._stop_sweeping.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout)
            self._sweeper = None
        deadline = time.monotonic() + timeout
        # Asked again until the thread ends: a worker the supervisor was just starting ignores a stop
        # that comes before it runs.
        while self._thread is not None and self._thread.is_alive() and time.monotonic() < deadline:
            with self._lock:
                worker = self._worker
            if worker is not None:
                worker.stop(in_sighandler=False)
            self._thread.join(min(1.0, max(0.0, deadline - time.monotonic())))
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

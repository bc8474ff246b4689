"""Sends worker tasks by name through a light Celery client; never imports memoryos_workers."""

from __future__ import annotations

import logging
import threading
from typing import Any

from producers.tracing import task_headers
from producers.wire.contract import PROMOTE_TASK, TASK_ROUTES, celery_config
from schemas.settings import Settings

log = logging.getLogger("memoryos.producers")


class TaskSender:
    """A send failure is logged and reported, never raised: the batch stays pending in Redis and
    the beat sweep re-sends it, so publishing a turn never fails because the broker hiccupped."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._app: Any = None
        self._lock = threading.Lock()
        self.failures = 0

    @property
    def app(self) -> Any:
        with self._lock:
            if self._app is None:
                from celery import Celery

                app = Celery("memoryos-producer", set_as_current=False)
                app.conf.update(celery_config(self._settings))
                self._app = app
            return self._app

    def send(self, task: str, *args: Any) -> bool:
        try:
            self.app.send_task(task, args=list(args), ignore_result=True, headers=task_headers() or None,
                               **TASK_ROUTES[task])  # the trace context rides in the headers (when tracing)
        except Exception as exc:  # noqa: BLE001 - any broker failure leaves the batch pending
            self.failures += 1
            log.warning("could not send %s%r (%s); the beat sweep will re-send it", task, args, type(exc).__name__)
            return False
        return True

    def promote(self, user_id: str) -> bool:
        return self.send(PROMOTE_TASK, user_id)

"""Celery tasks: thin shells over plain classes, so the logic is testable without a broker."""

from __future__ import annotations

import logging

from celery.signals import worker_process_init, worker_ready

from producers.contract import PROMOTE_TASK, SWEEP_TASK
from schemas.turns import ID_PATTERN

from .celery_app import app
from .promotion import Promoter
from .runtime import get_runtime

log = logging.getLogger("memoryos.tasks")
_ID = __import__("re").compile(ID_PATTERN)


@app.task(name=PROMOTE_TASK)
def promote(user_id: str) -> int:
    if not isinstance(user_id, str) or not _ID.match(user_id):
        log.error("promote: rejected invalid user_id %r", user_id)
        return 0
    return Promoter(get_runtime()).run(user_id)


@app.task(name=SWEEP_TASK)
def sweep() -> int:
    return get_runtime().pending.sweep()


@worker_ready.connect
def _warm_up(**_: object) -> None:
    """Open the model and the store at start-up: the first task is not slow, and a store held by
    another process is reported when the worker starts, not on the first turn."""
    runtime = get_runtime()
    if not runtime.settings.embedded:
        return  # prefork children open their own adapters
    runtime.warm_up()
    log.info("memoryos worker ready (store: %s)", runtime.settings.qdrant_url or runtime.settings.data_dir)


@worker_process_init.connect
def _fresh_runtime(**_: object) -> None:
    """A forked pool child must not share the parent's sockets or store handle."""
    from .runtime import Runtime, set_runtime

    set_runtime(Runtime(get_runtime().settings))

"""Celery tasks: thin shells over plain classes, so the logic is testable without a broker."""

from __future__ import annotations

import json
import logging

from celery.signals import worker_process_init, worker_process_shutdown, worker_ready

from memoryos_workers.heap import freeze_startup_heap
from memoryos_workers.runtime import Runtime, get_runtime
from memoryos_workers.worker.celery_app import app
from memoryos_workers.worker.retrieval_server import compute, start_in_child, stop_in_child
from memoryos_workers.worker.rpc import RPCAnswer
from producers.wire.contract import (
    ADMIN_TASK,
    EXTRACT_PERSONA_TASK,
    PROMOTE_TASK,
    READ_PERSONA_TASK,
    REFRESH_HEAT_TASK,
    RETRIEVE_TASK,
    SWEEP_TASK,
)
from schemas.turns import check_id

log = logging.getLogger("memoryos.tasks")
@app.task(name=PROMOTE_TASK)
def promote(user_id: str) -> int:
    if not _valid(user_id):
        return 0
    return get_runtime().promoter.run(user_id)


@app.task(name=REFRESH_HEAT_TASK)
def refresh_heat(user_id: str) -> bool:
    if not _valid(user_id):
        return False
    return get_runtime().persona_worker.refresh_heat(user_id)


@app.task(name=EXTRACT_PERSONA_TASK)
def extract_persona(user_id: str) -> dict:
    if not _valid(user_id):
        return {}
    return get_runtime().persona_worker.extract(user_id)


def _rpc(runtime: Runtime) -> RPCAnswer:
    """Cheap to build: it only holds the runtime's client and key names."""
    return RPCAnswer(runtime.redis, runtime.keys, runtime.settings.result_expires)


def _valid(user_id: object) -> bool:
    try:
        check_id("user_id", user_id)
    except ValueError:
        log.error("rejected a task for the invalid user_id %r", user_id)
        return False
    return True


@app.task(name=SWEEP_TASK)
def sweep() -> int:
    return get_runtime().pending.sweep()


@app.task(name=RETRIEVE_TASK)
def answer_retrieval(user_id: str, query: str, reply_id: str | None = None, **kwargs: object) -> None:
    """Retrievals sent as Celery tasks (producers of an earlier release); today's producers use the
    retrieval lane (worker/retrieval_server.py), which ingestion cannot hold up."""
    runtime = get_runtime()
    _rpc(runtime).answer(reply_id, lambda: compute(runtime, RETRIEVE_TASK, [user_id, query], dict(kwargs)))


@app.task(name=READ_PERSONA_TASK)
def answer_persona_read(kind: str, user_id: str | None, assistant_id: str | None, reply_id: str | None = None) -> None:
    """Persona reads sent as Celery tasks (producers of an earlier release); see answer_retrieval."""
    runtime = get_runtime()
    _rpc(runtime).answer(reply_id, lambda: compute(runtime, READ_PERSONA_TASK, [kind, user_id, assistant_id], {}))


@app.task(name=ADMIN_TASK)
def operator_command(op: str, user_id: str | None, reply_id: str | None = None,
                     params: dict | None = None) -> None:
    """The RPC side of the operators' commands (export, forget, inspect, dead letters, fact edits with their
    `params`) in the embedded setup, where only this process may open the vector store."""
    from memoryos_workers.ops import commands as operations

    _rpc(get_runtime()).answer(
        reply_id,
        lambda: json.dumps(operations.run(get_runtime(), op, user_id, params), ensure_ascii=False, default=str),
    )


@worker_ready.connect
def _warm_up(sender: object = None, **_: object) -> None:
    """Open the model and the store at start-up: the first task is not slow, and a store held by
    another process is reported when the worker starts, not on the first turn."""
    runtime = get_runtime()
    if not runtime.settings.embedded:
        return  # prefork children open their own adapters
    runtime.warm_up()
    if getattr(getattr(sender, "controller", None), "owns_process", True):
        freeze_startup_heap()  # a worker's own process: full collections skip what start-up loaded
    log.info("memoryos worker ready (store: %s)", runtime.settings.qdrant_url or runtime.settings.data_dir)


@worker_process_init.connect
def _fresh_runtime(**_: object) -> None:
    """A forked pool child must not share the parent's sockets or store handle; it serves the retrieval
    lane itself when its worker consumes the retrieval queue."""
    from memoryos_workers.runtime import set_runtime

    set_runtime(Runtime(get_runtime().settings))
    start_in_child()


@worker_process_shutdown.connect
def _stop_child_servers(**_: object) -> None:
    stop_in_child()

"""The retrieval lane's servers: threads of their own, in the process that owns the store, that pop read
requests (producers.wire.rpc) and answer them through the caller's reply list.

Why not Celery tasks: a Celery queue is served by the worker's pool, and ingestion (promote drains,
persona extraction) can hold every thread of it; a retrieval then waits behind minutes of batches. These
threads do nothing else, so ingestion can never take them, and together with the embedder's separate
query session (embeddings/embedder.py) a query never waits behind batch work.

Where they run: a bootstep of the Celery app (RetrievalLane) starts them in every worker that consumes
the retrieval queue, which covers `memoryos worker`, `celery -A memoryos_workers worker`, the embedded
in-process worker (worker/embedded.py) and the tests' worker. A prefork worker (Qdrant server) runs them
in each pool child, never in the parent: a parent with threads running must not fork.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import redis
from celery import bootsteps

from memoryos_workers.counters import count
from memoryos_workers.runtime import Runtime, get_runtime
from memoryos_workers.worker.rpc import RPCAnswer
from producers.cluster import TRANSIENT_ERRORS
from producers.tracing import SpanKind, continued, span
from producers.wire.contract import READ_PERSONA_TASK, RETRIEVAL_QUEUE, RETRIEVE_TASK
from producers.wire.rpc import ALIVE_S, HEARTBEAT_S, Request
from schemas.query import RetrievalRequest
from schemas.turns import check_id

log = logging.getLogger("memoryos.retrieval_server")

_POP_TIMEOUT = 0.5  # seconds a thread blocks on the list before it looks at the stop flag again
_CLOCK_SKEW_S = 1.0  # a request is dropped only this long past its deadline: hosts' clocks differ a little
_RETRY_S = 1.0  # after a Redis error, before the next attempt


def compute(runtime: Runtime, task: str, args: list[Any], kwargs: dict[str, Any]) -> str:
    """The JSON answer of one read; ValueError is the caller's bad input (it reaches them as ValueError)."""
    if task == RETRIEVE_TASK:
        request = RetrievalRequest.from_wire(args, kwargs, max_text_chars=runtime.settings.max_text_chars)
        return runtime.retriever.retrieve(request).model_dump_json()
    if task == READ_PERSONA_TASK:
        return json.dumps(_persona_answer(runtime, *args))
    raise ValueError(f"task: {task!r} is not served by the retrieval lane")


def _persona_answer(runtime: Runtime, kind: str, user_id: str | None, assistant_id: str | None) -> Any:
    """A RemoteMemory's persona read (profile, or facts of a kind), as JSON values."""
    if kind not in ("profile", "user", "assistant"):
        raise ValueError(f"kind: must be profile, user or assistant, not {kind!r}")
    check_id("user_id", user_id, required=kind != "assistant")
    assistant = check_id("assistant_id", assistant_id or runtime.settings.assistant_id)
    if kind == "profile":
        profile = runtime.persona.get_profile(str(user_id))
        return profile.model_dump(mode="json") if profile else None
    return [e.model_dump(mode="json") for e in runtime.persona.facts(kind, user_id, str(assistant))]


class RetrievalServer:
    """`threads` threads popping the request list; start() returns at once, stop() joins them."""

    def __init__(self, runtime: Runtime | None = None, threads: int | None = None) -> None:
        self._runtime = runtime  # None: the process's runtime, looked up when serving starts
        self._threads_wanted = threads
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ready = threading.Event()

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = get_runtime()
        return self._runtime

    def start(self) -> RetrievalServer:
        self._stop.clear()
        n = self._threads_wanted or self.runtime.settings.retrieval_threads
        self._threads = [
            threading.Thread(target=self._serve, args=(i,), name=f"memoryos-retrieval-{i}", daemon=True)
            for i in range(n)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
        try:
            self.runtime.redis.zrem(self.runtime.keys.rpc_servers, self.name)
        except redis.RedisError as exc:  # the entry ages out on its own
            log.debug("could not unregister retrieval server %s: %s", self.name, exc)

    # -- one thread ------------------------------------------------------------------------------------
    @property
    def _answers(self) -> RPCAnswer:
        rt = self.runtime
        return RPCAnswer(rt.redis, rt.keys, rt.settings.result_expires)

    def _serve(self, index: int) -> None:
        if index == 0:
            self._warm_up()
        else:
            self._ready.wait()
        runtime = self.runtime
        key = runtime.keys.rpc_requests
        beat_at = 0.0
        while not self._stop.is_set():
            try:
                if index == 0 and time.monotonic() >= beat_at:
                    self._heartbeat()
                    beat_at = time.monotonic() + HEARTBEAT_S
                popped = runtime.redis.blpop([key], timeout=_POP_TIMEOUT)
            except (redis.RedisError, *TRANSIENT_ERRORS) as exc:  # a cluster failing over, too
                log.warning("retrieval server: Redis failed (%s: %s); retrying in %g s", type(exc).__name__, exc,
                            _RETRY_S)
                self._stop.wait(_RETRY_S)
                continue
            if popped is None:
                continue
            try:
                self._handle(popped[1])
            except Exception:  # noqa: BLE001 - e.g. Redis lost while pushing the answer: the thread goes on
                log.exception("retrieval server: a request failed outside its answer")

    def _warm_up(self) -> None:
        """The model and the store open before the first request, which would otherwise miss its deadline.
        A failure is logged; requests then report it to their callers."""
        try:
            self.runtime.warm_up()
            _ = self.runtime.retriever
        except Exception as exc:  # noqa: BLE001 - e.g. the store held by another process
            log.error("retrieval server could not open the store or the model: %s", exc)
        finally:
            self._ready.set()

    def _heartbeat(self) -> None:
        rt = self.runtime
        now = time.time()
        pipe = rt.redis.pipeline(transaction=False)
        pipe.zadd(rt.keys.rpc_servers, {self.name: now})
        pipe.zremrangebyscore(rt.keys.rpc_servers, "-inf", now - 4 * ALIVE_S)  # servers that died
        pipe.execute()

    def _handle(self, raw: str) -> None:
        rt = self.runtime
        try:
            request = Request.decode(raw)
        except ValueError as exc:
            log.error("dropped a malformed retrieval request: %s", exc)
            return
        if time.time() > request.deadline + _CLOCK_SKEW_S:
            # The caller answered itself from Redis long ago (or gave up): computing it helps nobody.
            _count_quietly(rt, retrieval_requests_expired=1)
            return
        with continued(request.trace), span(f"{request.task} serve", SpanKind.CONSUMER, **{
                "memoryos.request_id": request.request_id, "memoryos.server": self.name}):
            self._answers.answer(request.request_id, lambda: compute(rt, request.task, request.args, request.kwargs))


def _count_quietly(rt: Runtime, **counters: int) -> None:
    try:
        count(rt.redis, rt.keys.stats, **counters)
    except redis.RedisError as exc:
        log.debug("could not count %s: %s", counters, exc)


# -- hosting in Celery workers ---------------------------------------------------------------------------

_serve_in_children = False  # set in a prefork parent, read by its children after the fork
_child_server: RetrievalServer | None = None


def _consumes_retrieval(app: Any) -> bool:
    return RETRIEVAL_QUEUE in app.amqp.queues.consume_from


def _forks(worker: Any) -> bool:
    return str(getattr(worker.pool_cls, "__module__", "")).endswith(".prefork")


class RetrievalLane(bootsteps.StartStopStep):
    """Retrieval servers in every worker that consumes the retrieval queue (see the module docstring)."""

    label = "memoryos retrieval lane"
    requires = ("celery.worker.components:Pool",)  # after the pool: a solo pool replaces the runtime first

    def include_if(self, parent: Any) -> bool:
        global _serve_in_children
        if not _consumes_retrieval(parent.app):
            return False
        if _forks(parent):
            _serve_in_children = True
            return False
        return True

    def create(self, parent: Any) -> RetrievalServer:
        return RetrievalServer()


def start_in_child() -> None:
    """A prefork pool child starts its own servers (called after it made its fresh runtime)."""
    global _child_server
    if _serve_in_children and _child_server is None:
        _child_server = RetrievalServer().start()


def stop_in_child() -> None:
    global _child_server
    if _child_server is not None:
        _child_server.stop()
        _child_server = None

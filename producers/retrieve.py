"""Retrieval over RPC: for processes that do not own the vector store (light chat backends, the CLI, the
embedded setup's other processes). The request goes into the retrieval lane (producers.wire.rpc: a Redis
list that only the retrieval servers' own threads pop, so ingestion can never hold them) and the answer
comes back through a short-lived reply list (see memoryos_workers.worker.rpc for why not the result
backend); it is the same RetrievedContext as in-process retrieval.

A retrieval has a deadline (MEMORYOS_RETRIEVAL_DEADLINE_MS, 250 ms by default): past it the caller gets
what Redis alone holds, marked degraded, instead of waiting or an exception, unless it asks for one.

Never imports memoryos_workers: operators' commands are sent by name through the light Celery client of
producers.sender.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import redis
from redis.exceptions import AskError

from producers.broker import describe as describe_broker
from producers.cluster import pool_for_key, refresh_slots
from producers.connection import redis_client
from producers.context import RetrievedContext
from producers.errors import MemoryOSError, RedisUnavailableError, redact_url
from producers.publish import Publisher, default_publisher
from producers.sender import TaskSender
from producers.tracing import SpanKind, task_headers, traced
from producers.wire import state
from producers.wire.contract import (
    DEGRADED_COUNTERS,
    REPLY_BUSY,
    REPLY_ERROR,
    REPLY_INVALID,
    REPLY_OK,
    RETRIEVAL_QUEUE,
    RETRIEVE_TASK,
)
from producers.wire.keys import Keys
from producers.wire.rpc import ALIVE_S, LANE_TASKS, MAX_WAITING, Request, busy_error
from producers.wire.script_pipeline import ScriptPipeline
from producers.wire.scripts import Scripts
from schemas.query import OnDeadline, RetrievalRequest
from schemas.settings import Settings

__all__ = ["OnDeadline", "RetrievalClient", "RetrievalTimeout", "client_for", "retrieve"]


class RetrievalTimeout(MemoryOSError, TimeoutError):
    """No worker answered the retrieval in time (none running on the queue, or all busy)."""


class RetrievalClient:
    """Thread-safe; one per process and settings is enough (see `retrieve`)."""

    def __init__(
        self, settings: Settings, sender: TaskSender | None = None, client: redis.Redis | None = None,
        scripts: Scripts | None = None,
    ) -> None:
        self.settings = settings
        self.sender = sender or TaskSender(settings)
        self.redis = client or redis_client(settings.redis_url)
        self.keys = Keys.for_settings(settings)
        self.scripts = scripts or Scripts.register(self.redis)

    @classmethod
    def from_publisher(cls, publisher: Publisher) -> RetrievalClient:
        return cls(publisher.settings, publisher.sender, publisher.redis, publisher.scripts)

    @traced("memoryos.retrieve.rpc", lambda self, request: {"memoryos.user_id": request.user_id},
            lambda context: {"memoryos.degraded": context.degraded}, kind=SpanKind.CLIENT)
    def retrieve(self, request: RetrievalRequest) -> RetrievedContext:
        """The defaults (top_k, max_tokens, the deadline) are resolved here, so the caller's settings decide;
        bad input raised ValueError naming the field before anything is sent (building the request). A time
        without a zone (now, since, until) is read in the user's time zone. See `retrieve` for the deadline."""
        s = self.settings
        request = request.resolved(s)
        budget = _budget(request.deadline_ms, s)
        mode = request.on_deadline or s.retrieval_on_deadline
        started = time.monotonic()
        args, options = request.wire()
        lane_request = self._request(RETRIEVE_TASK, args, options, budget)
        wait = budget if mode == "raise" else budget - min(_FALLBACK_RESERVE_S, budget / 4)
        frame = self._exchange(lane_request, wait)
        if frame is not None:
            return RetrievedContext.model_validate_json(_unwrap(frame))
        if mode == "raise":
            self._withdraw(lane_request)
            raise _timeout(budget, s)
        return self._degraded(lane_request, request, time.monotonic() - started)

    def call(
        self, task: str, args: list[Any], kwargs: dict[str, Any], *, timeout: float | None = None,
        argsrepr: str | None = None,
    ) -> str:
        """Send a read task and wait for its answer (JSON text); RetrievalTimeout when none comes in time.
        Reads a chat request waits on go through the retrieval lane, operators' commands through Celery."""
        s = self.settings
        timeout = s.retrieval_timeout if timeout is None else float(timeout)
        if not timeout > 0:
            raise ValueError(f"timeout: must be a positive number of seconds, got {timeout!r}")
        if task in LANE_TASKS:
            request = self._request(task, args, kwargs, timeout)
            frame = self._exchange(request, timeout)
            if frame is None:
                self._withdraw(request)
        else:
            frame = self._celery_call(task, args, kwargs, timeout, argsrepr)
        if frame is None:
            raise _timeout(timeout, s)
        return _unwrap(frame)

    def lane(self) -> dict[str, int]:
        """The retrieval lane at a glance: servers heard from lately, requests no server has taken yet."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcount(self.keys.rpc_servers, time.time() - ALIVE_S, "+inf")
        pipe.llen(self.keys.rpc_requests)
        servers, waiting = pipe.execute()
        return {"retrieval_servers": int(servers), "retrieval_requests_waiting": int(waiting)}

    # -- the retrieval lane ------------------------------------------------------------------------------
    def _request(self, task: str, args: list[Any], kwargs: dict[str, Any], budget: float) -> Request:
        return Request(uuid.uuid4().hex, task, args, kwargs, time.time() + budget, task_headers())

    def _exchange(self, request: Request, wait: float) -> str | None:
        """Queue the request (trimmed, so requests nobody serves stay bounded) and wait for its answer."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.rpush(self.keys.rpc_requests, request.encode())
            pipe.ltrim(self.keys.rpc_requests, -MAX_WAITING, -1)
            pipe.execute()
        except redis.RedisError as exc:
            raise RedisUnavailableError(
                f"could not send the retrieval to {redact_url(self.settings.redis_url)} ({type(exc).__name__}: {exc})"
            ) from exc
        return self._wait(self.keys.reply(request.request_id), wait)

    def _withdraw(self, request: Request) -> None:
        """A request nobody took in time leaves the lane, so no server computes it for nobody (best effort:
        servers also skip requests long past their deadline)."""
        try:
            self.redis.lrem(self.keys.rpc_requests, 1, request.encode())
        except redis.RedisError:
            pass  # the caller is about to hear of the timeout; this cleanup is not worth another error

    def _celery_call(
        self, task: str, args: list[Any], kwargs: dict[str, Any], timeout: float, argsrepr: str | None
    ) -> str | None:
        request_id = uuid.uuid4().hex
        try:
            self.sender.app.send_task(
                task,
                args=args,
                kwargs={**kwargs, "reply_id": request_id},
                queue=RETRIEVAL_QUEUE,
                expires=timeout,  # a worker that starts later drops it instead of answering nobody
                ignore_result=True,  # the answer comes through the reply list, not the result backend
                argsrepr=argsrepr,
                kwargsrepr=repr(kwargs),
                headers=task_headers() or None,
            )
        except Exception as exc:  # kombu's OperationalError and friends
            raise RedisUnavailableError(
                f"could not send the request to the broker {describe_broker(self.settings)} "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        return self._wait(self.keys.reply(request_id), timeout)

    def _wait(self, key: str, timeout: float) -> str | None:
        """BLPOP, timed here rather than by Redis: Redis checks blocking timeouts only about every 100 ms
        (hz 10), which is most of a 250 ms deadline. Long waits go in slices shorter than the client's
        socket timeout, so they never read as a dead Redis; the answer is taken the moment it is pushed."""
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    popped = _blpop(self.redis, key, min(left, _BLPOP_SLICE), final=left <= _BLPOP_SLICE)
                except AskError:  # MOVED or ASK: the reply's slot is moving to another master of the cluster
                    refresh_slots(self.redis)
                    time.sleep(0.01)
                    continue
                if popped is not None:
                    return popped
        except redis.RedisError as exc:
            raise RedisUnavailableError(
                f"lost Redis at {redact_url(self.settings.redis_url)} while waiting for the answer "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        return None

    # -- past the deadline -----------------------------------------------------------------------------
    def _degraded(self, request: Request, asked: RetrievalRequest, waited: float) -> RetrievedContext:
        """What Redis alone holds, in one round trip: the request leaves the lane (nobody computes it for
        nothing), the user's recent and pending turns, the last known profile, and whether a server lives.
        Fitted to the same token budget as a full answer: a user with a backlog has many pending turns."""
        keys = self.keys.user(asked.user_id)
        try:
            reads = ScriptPipeline(self.redis)  # no SCRIPT EXISTS first: this path is already late
            reads.pipe.lrem(self.keys.rpc_requests, 1, request.encode())
            reads.run(self.scripts.recent, keys.script_keys(), ())
            reads.pipe.get(keys.profile)
            reads.pipe.zcount(self.keys.rpc_servers, time.time() - ALIVE_S, "+inf")
            still_queued, recent, profile, servers = reads.execute()
            reason = _reason(int(servers), bool(int(still_queued)), waited)
            stats = self.keys.stats.any()
            pipe = self.redis.pipeline(transaction=False)
            pipe.hincrby(stats, DEGRADED_COUNTERS["all"], 1)
            pipe.hincrby(stats, DEGRADED_COUNTERS[reason[0]], 1)
            pipe.execute()
        except redis.RedisError as exc:
            raise RedisUnavailableError(
                f"the retrieval missed its deadline and Redis at {redact_url(self.settings.redis_url)} failed "
                f"too ({type(exc).__name__}: {exc})"
            ) from exc
        return RetrievedContext(
            user_id=asked.user_id, assistant_id=asked.assistant_id, query=asked.query,
            short_term=state.recent_reply(recent)[0], user_profile=state.profile_copy(profile), degraded=True,
            degraded_reason=reason[1], timings_ms={"waited": round(waited * 1000, 3)},
        ).fit(asked.budget)


_BLPOP_SLICE = 2.0  # seconds; below producers.connection's socket timeout
_FALLBACK_RESERVE_S = 0.010  # of the deadline, kept for reading the degraded answer from Redis
_SERVER_SLACK_S = 1.0  # Redis's own BLPOP timeout runs this much longer than ours: ours decides


def _blpop(client: redis.Redis, key: str, wait: float, *, final: bool) -> str | None:
    """One BLPOP of `wait` seconds. The last one of a wait is timed here: Redis's own timeout runs longer,
    and when ours fires first the connection is closed rather than returned to the pool, since the BLPOP
    is still pending on it. Earlier slices let Redis time out, keeping the connection."""
    pool = pool_for_key(client, key)  # the master of the reply's slot on a cluster
    conn = pool.get_connection()
    try:
        conn.send_command("BLPOP", key, round(wait + _SERVER_SLACK_S if final else wait, 3))
        if not conn.can_read(timeout=wait if final else wait + _SERVER_SLACK_S):
            conn.disconnect()
            return None
        popped = conn.read_response()
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)
    return None if popped is None else str(popped[1])


def _budget(deadline_ms: float | None, settings: Settings) -> float:
    """Seconds the caller gives the full answer."""
    return float(settings.retrieval_deadline_ms if deadline_ms is None else deadline_ms) / 1000


def _reason(servers: int, still_queued: bool, waited: float) -> tuple[str, str]:
    """(counter key, message) of a degraded answer."""
    ms = f"{waited * 1000:.0f} ms"
    if servers == 0:
        return "no_server", (
            f"no retrieval server answered within {ms}: none has been seen running. Start a worker that "
            f"consumes {RETRIEVAL_QUEUE} (`memoryos worker`) with the same MEMORYOS_REDIS_URL and MEMORYOS_KEY_PREFIX"
        )
    if still_queued:
        return "queued", (
            f"the retrieval servers were busy: the request waited {ms} without being taken. Raise "
            "MEMORYOS_RETRIEVAL_THREADS or add retrieval workers"
        )
    return "slow", f"the retrieval server did not finish within {ms}"


def _timeout(timeout: float, settings: Settings) -> RetrievalTimeout:
    return RetrievalTimeout(
        f"no worker answered on queue {RETRIEVAL_QUEUE} within {timeout:g} s; start one with `memoryos worker` "
        f"(or `celery -A memoryos_workers worker -Q {RETRIEVAL_QUEUE}`) using the same MEMORYOS_REDIS_URL "
        f"({redact_url(settings.redis_url)}) and MEMORYOS_KEY_PREFIX ({settings.key_prefix!r}), or give it a "
        "longer deadline if the workers are only busy"
    )


def _unwrap(frame: str) -> str:
    if frame.startswith(REPLY_OK):
        return frame[len(REPLY_OK):]
    if frame.startswith(REPLY_INVALID):  # the worker rejected the input: same message as local validation
        raise ValueError(frame[len(REPLY_INVALID):])
    if frame.startswith(REPLY_BUSY):  # a retryable refusal (FactsBusy): the same type and retry_after as local
        raise busy_error(frame[len(REPLY_BUSY):])
    raise MemoryOSError(f"retrieval failed on the worker: {frame.removeprefix(REPLY_ERROR)}")


_clients: dict[int, RetrievalClient] = {}
_clients_lock = threading.Lock()


def client_for(publisher: Publisher | None = None) -> RetrievalClient:
    """The client sharing a publisher's Celery connection (default: the module-level publisher)."""
    publisher = publisher or default_publisher()
    with _clients_lock:
        client = _clients.get(id(publisher))
        if client is None or client.sender is not publisher.sender:
            if len(_clients) >= 16:
                _clients.clear()  # one publisher per process in practice; never grow without bound
            client = _clients[id(publisher)] = RetrievalClient.from_publisher(publisher)
        return client


def retrieve(user_id: str, query: str, *, publisher: Publisher | None = None, timeout: float | None = None,
             **options: Any) -> RetrievedContext:
    """The user's memory context for `query`, computed by a retrieval server.

    `options` are the fields of schemas.query.RetrievalRequest: max_tokens (the context's prompt budget,
    default MEMORYOS_CONTEXT_MAX_TOKENS; 0 = none), top_k, assistant_id, now (when the question is asked, for
    "yesterday" and "last Tuesday"; default the current time), filters (since, until, assistant_id,
    metadata), and the deadline:

    deadline_ms (default MEMORYOS_RETRIEVAL_DEADLINE_MS): when the full answer has not arrived by then,
    on_deadline="degrade" (default MEMORYOS_RETRIEVAL_ON_DEADLINE) returns what Redis alone holds (short-term
    and pending turns, the last known profile) with degraded=True and degraded_reason, and counts it
    (`retrievals_degraded` in `memoryos stats`); on_deadline="raise" raises RetrievalTimeout instead.
    timeout is the older spelling of the deadline, in seconds. Bad input raises ValueError, a failure on the
    worker MemoryOSError, an unreachable Redis RedisUnavailableError.

    Uses the settings of `publisher` (default: the module-level one, see producers.configure).
    """
    client = client_for(publisher)
    if timeout is not None:
        if "deadline_ms" in options:
            raise ValueError("deadline_ms and timeout: give one of them (timeout is deadline_ms / 1000)")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout: must be a positive number, got {timeout!r}")
        options["deadline_ms"] = float(timeout) * 1000
    request = RetrievalRequest.of(user_id, query, max_text_chars=client.settings.max_text_chars, **options)
    return client.retrieve(request)

"""Retrieval over RPC: for processes that do not own the vector store (light chat backends, the CLI, the
embedded setup's other processes). A task on the retrieval queue, answered through a short-lived
reply list in Redis (see memoryos_workers.worker.rpc for why not the result backend); the answer is the same
RetrievedContext as in-process retrieval.

Never imports memoryos_workers: the task is sent by name through the light Celery client of
producers.sender.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import redis

from producers.connection import redis_client
from producers.errors import MemoryOSError, RedisUnavailableError, redact_url
from producers.publish import Publisher, default_publisher
from producers.sender import TaskSender
from producers.wire.contract import REPLY_ERROR, REPLY_INVALID, REPLY_OK, RETRIEVAL_QUEUE, RETRIEVE_TASK
from producers.wire.keys import Keys
from schemas.context import RetrievedContext
from schemas.query import check_max_tokens, check_retrieval_args, parse_filters, parse_now
from schemas.settings import Settings


class RetrievalTimeout(MemoryOSError, TimeoutError):
    """No worker answered the retrieval in time (none running on the queue, or all busy)."""


class RetrievalClient:
    """Thread-safe; one per process and settings is enough (see `retrieve`)."""

    def __init__(
        self, settings: Settings, sender: TaskSender | None = None, client: redis.Redis | None = None
    ) -> None:
        self.settings = settings
        self.sender = sender or TaskSender(settings)
        self.redis = client or redis_client(settings.redis_url)
        self.keys = Keys(settings.key_prefix)

    @classmethod
    def from_publisher(cls, publisher: Publisher) -> RetrievalClient:
        return cls(publisher.settings, publisher.sender, publisher.redis)

    def retrieve(
        self,
        user_id: str,
        query: str,
        *,
        assistant_id: str | None = None,
        top_k: int | None = None,
        timeout: float | None = None,
        now: datetime | str | None = None,
        filters: Mapping[str, Any] | None = None,
        max_tokens: int | None = None,
    ) -> RetrievedContext:
        """top_k defaults to MEMORYOS_RETRIEVAL_TOP_PAGES and max_tokens to MEMORYOS_CONTEXT_MAX_TOKENS,
        resolved here so the caller's settings decide; bad input raises ValueError naming the field before
        anything is sent. A time without a zone (now, since, until) is read in the user's time zone."""
        s = self.settings
        top_k = s.retrieval_top_pages if top_k is None else top_k
        check_retrieval_args(user_id, query, assistant_id, top_k, max_text_chars=s.max_text_chars)
        max_tokens = s.context_max_tokens if max_tokens is None else check_max_tokens(max_tokens)
        when, flt = parse_now(now), parse_filters(filters)
        options = {
            "assistant_id": assistant_id, "top_k": top_k, "max_tokens": max_tokens,
            "now": when.isoformat() if when is not None else None,
            "filters": flt.model_dump(mode="json", exclude_defaults=True) if flt is not None else None,
        }
        answer = self.call(
            RETRIEVE_TASK, [user_id, query], options, timeout=timeout,
            # What worker logs show: the query is the user's words, so only its length.
            argsrepr=f"[{user_id!r}, <query of {len(query)} chars>]",
        )
        return RetrievedContext.model_validate_json(answer)

    def call(
        self, task: str, args: list[Any], kwargs: dict[str, Any], *, timeout: float | None = None,
        argsrepr: str | None = None,
    ) -> str:
        """Send a read task to the retrieval queue and wait for its answer (JSON text) in a reply list."""
        s = self.settings
        timeout = s.retrieval_timeout if timeout is None else float(timeout)
        if not timeout > 0:
            raise ValueError(f"timeout: must be a positive number of seconds, got {timeout!r}")
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
            )
        except Exception as exc:  # kombu's OperationalError and friends
            raise RedisUnavailableError(
                f"could not send the retrieval to {redact_url(s.redis_url)} ({type(exc).__name__}: {exc})"
            ) from exc
        return _unwrap(self._wait(self.keys.reply(request_id), timeout), timeout, s)

    def _wait(self, key: str, timeout: float) -> str | None:
        """BLPOP in slices shorter than the client's socket timeout, so a long RPC timeout never reads as
        a dead Redis; the answer is taken the moment it is pushed."""
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                popped = self.redis.blpop([key], timeout=min(left, _BLPOP_SLICE))
                if popped is not None:
                    return str(popped[1])
        except redis.RedisError as exc:
            raise RedisUnavailableError(
                f"lost Redis at {redact_url(self.settings.redis_url)} while waiting for the answer "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        return None


_BLPOP_SLICE = 2.0  # seconds; below producers.connection's socket timeout


def _unwrap(frame: str | None, timeout: float, settings: Settings) -> str:
    if frame is None:
        raise RetrievalTimeout(
            f"no worker answered on queue {RETRIEVAL_QUEUE} within {timeout:g} s; start one with `memoryos worker` "
            f"(or `celery -A memoryos_workers worker -Q {RETRIEVAL_QUEUE}`) using the same MEMORYOS_REDIS_URL "
            f"({redact_url(settings.redis_url)}) and MEMORYOS_KEY_PREFIX ({settings.key_prefix!r}), or raise "
            "MEMORYOS_RETRIEVAL_TIMEOUT if the workers are only busy"
        )
    if frame.startswith(REPLY_OK):
        return frame[len(REPLY_OK):]
    if frame.startswith(REPLY_INVALID):  # the worker rejected the input: same message as local validation
        raise ValueError(frame[len(REPLY_INVALID):])
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


def retrieve(
    user_id: str,
    query: str,
    *,
    assistant_id: str | None = None,
    top_k: int | None = None,
    timeout: float | None = None,
    publisher: Publisher | None = None,
    now: datetime | str | None = None,
    filters: Mapping[str, Any] | None = None,
    max_tokens: int | None = None,
) -> RetrievedContext:
    """The user's memory context for `query`, computed by a worker; TimeoutError when none answers.

    max_tokens: the context's prompt budget (default MEMORYOS_CONTEXT_MAX_TOKENS; 0 = none); now: when the
    question is asked, for "yesterday" and "last Tuesday" (default: the current time); filters: since,
    until, assistant_id, metadata (exact values). Uses the settings of `publisher` (default: the
    module-level one, see producers.configure).
    """
    return client_for(publisher).retrieve(user_id, query, assistant_id=assistant_id, top_k=top_k, timeout=timeout,
                                          now=now, filters=filters, max_tokens=max_tokens)

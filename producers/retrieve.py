"""Retrieval over RPC: for processes that do not own the vector store (light chat backends, the CLI, the
embedded setup's other processes). A task on the retrieval queue, answered through the Redis result
backend; the answer is the same RetrievedContext as in-process retrieval.

Never imports memoryos_workers: the task is sent by name through the light Celery client of
producers.sender.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from schemas.context import RetrievedContext, check_retrieval_args
from schemas.settings import Settings

from .contract import RETRIEVAL_QUEUE, RETRIEVE_TASK
from .errors import MemoryOSError, RedisUnavailableError, redact_url
from .publish import Publisher, default_publisher
from .sender import TaskSender


class RetrievalTimeout(MemoryOSError, TimeoutError):
    """No worker answered the retrieval in time (none running on the queue, or all busy)."""


class RetrievalClient:
    """Thread-safe; one per process and settings is enough (see `retrieve`)."""

    def __init__(self, settings: Settings, sender: TaskSender | None = None) -> None:
        self.settings = settings
        self.sender = sender or TaskSender(settings)

    @classmethod
    def from_publisher(cls, publisher: Publisher) -> RetrievalClient:
        return cls(publisher.settings, publisher.sender)

    def retrieve(
        self,
        user_id: str,
        query: str,
        *,
        assistant_id: str | None = None,
        top_k: int = 10,
        timeout: float | None = None,
    ) -> RetrievedContext:
        s = self.settings
        check_retrieval_args(user_id, query, assistant_id, top_k, max_text_chars=s.max_text_chars)
        value = self.call(
            RETRIEVE_TASK, [user_id, query], {"assistant_id": assistant_id, "top_k": top_k}, timeout=timeout,
            # What worker logs show: the query is the user's words, so only its length.
            argsrepr=f"[{user_id!r}, <query of {len(query)} chars>]",
        )
        return RetrievedContext.model_validate(value)

    def call(
        self, task: str, args: list[Any], kwargs: dict[str, Any], *, timeout: float | None = None,
        argsrepr: str | None = None,
    ) -> Any:
        """Send a read task to the retrieval queue and wait for its JSON answer."""
        s = self.settings
        timeout = s.retrieval_timeout if timeout is None else float(timeout)
        if not timeout > 0:
            raise ValueError(f"timeout: must be a positive number of seconds, got {timeout!r}")
        app = self.sender.app
        try:
            result = app.send_task(
                task,
                args=args,
                kwargs=kwargs,
                queue=RETRIEVAL_QUEUE,
                expires=timeout,  # a worker that starts later drops it instead of answering nobody
                ignore_result=False,
                argsrepr=argsrepr,
                kwargsrepr=repr(kwargs),
            )
        except Exception as exc:  # kombu's OperationalError and friends
            raise RedisUnavailableError(
                f"could not send the retrieval to {redact_url(s.redis_url)} ({type(exc).__name__}: {exc})"
            ) from exc
        try:
            value: Any = result.get(timeout=timeout, propagate=True, disable_sync_subtasks=False)
        except Exception as exc:
            raise _translate(exc, timeout, s) from exc
        finally:
            _forget(result)
        return value


def _translate(exc: Exception, timeout: float, settings: Settings) -> Exception:
    from celery.exceptions import TimeoutError as CeleryTimeout

    if isinstance(exc, CeleryTimeout):
        return RetrievalTimeout(
            f"no worker answered on queue {RETRIEVAL_QUEUE} within {timeout:g} s; start one with `memoryos worker` "
            f"(or `celery -A memoryos_workers worker -Q {RETRIEVAL_QUEUE}`) using the same MEMORYOS_REDIS_URL "
            f"({redact_url(settings.redis_url)}) and MEMORYOS_KEY_PREFIX ({settings.key_prefix!r}), or raise "
            "MEMORYOS_RETRIEVAL_TIMEOUT if the workers are only busy"
        )
    if isinstance(exc, ValueError):
        return exc  # the worker rejected the input: same message as local validation
    return MemoryOSError(f"retrieval failed on the worker: {type(exc).__name__}: {exc}")


def _forget(result: Any) -> None:
    """Drop the stored answer now rather than after result_expires (Redis runs with noeviction), off the
    caller's path: the answer is already in hand."""
    global _forgetter
    with _forgetter_lock:
        if _forgetter is None:
            _forgetter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memoryos-forget-results")
    _forgetter.submit(_forget_now, result)


def _forget_now(result: Any) -> None:
    try:
        result.forget()
    except Exception:  # noqa: BLE001 - it expires on its own after result_expires
        pass


_forgetter: ThreadPoolExecutor | None = None
_forgetter_lock = threading.Lock()


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
    top_k: int = 10,
    timeout: float | None = None,
    publisher: Publisher | None = None,
) -> RetrievedContext:
    """The user's memory context for `query`, computed by a worker; TimeoutError when none answers.

    Uses the settings of `publisher` (default: the module-level one, see producers.configure).
    """
    return client_for(publisher).retrieve(user_id, query, assistant_id=assistant_id, top_k=top_k, timeout=timeout)

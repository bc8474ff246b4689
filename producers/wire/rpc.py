"""The retrieval lane: how a read request travels to the threads that serve it.

Reads a chat request waits on (retrieval, persona reads) do not go through Celery: a Celery queue is
served by the same pool as ingestion, so a burst of turns could hold every thread. They go into one
Redis list that only the retrieval servers pop (memoryos_workers.worker.retrieval_server), and the
answer comes back through the caller's reply list, framed by contract.REPLY_* as before.

A request carries its deadline (epoch seconds) so a server never computes an answer nobody waits for;
the list is trimmed on every push, so requests piling up while no server runs stay bounded in a Redis
that runs with noeviction.

A retryable refusal (FactsBusy) crosses back typed, with its retry_after (busy_reply / busy_error), not as a
message the caller would have to recognise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from producers.errors import FactsBusy, MemoryOSError
from producers.wire.contract import READ_PERSONA_TASK, REPLY_BUSY, RETRIEVE_TASK

LANE_TASKS = frozenset({RETRIEVE_TASK, READ_PERSONA_TASK})
MAX_WAITING = 10_000  # requests kept in the list; older ones are long past any deadline
HEARTBEAT_S = 5.0  # how often a server says it is alive (rpc_servers sorted set)
ALIVE_S = 3 * HEARTBEAT_S  # a server not heard from for this long counts as gone
REQUEST_VERSION = 1


@dataclass(frozen=True)
class Request:
    request_id: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    deadline: float  # epoch seconds; past it the caller no longer waits
    trace: dict[str, str] = field(default_factory=dict)  # the caller's trace context (W3C headers), if traced

    def encode(self) -> str:
        frame: dict[str, Any] = {"v": REQUEST_VERSION, "id": self.request_id, "task": self.task, "args": self.args,
                                 "kwargs": self.kwargs, "deadline": self.deadline}
        if self.trace:
            frame["trace"] = self.trace  # optional: servers of any version ignore what they do not read
        return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def decode(cls, raw: str) -> Request:
        """ValueError when the frame is not a request of this version (a server logs and drops it)."""
        try:
            data = json.loads(raw)
            carried = data.get("trace")
            request = cls(str(data["id"]), str(data["task"]), list(data["args"]), dict(data["kwargs"]),
                          float(data["deadline"]),
                          {str(k): str(v) for k, v in carried.items()} if isinstance(carried, dict) else {})
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a retrieval request: {exc}") from exc
        if data.get("v") != REQUEST_VERSION:
            raise ValueError(f"retrieval request of version {data.get('v')!r}, expected {REQUEST_VERSION}")
        return request


def busy_reply(exc: FactsBusy) -> str:
    """The reply frame of a retryable refusal: its type, message and retry_after."""
    body = {"type": type(exc).__name__, "message": str(exc), "retry_after": exc.retry_after}
    return REPLY_BUSY + json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def busy_error(body: str) -> Exception:
    """The error a busy frame's body (after REPLY_BUSY) stands for, to raise: FactsBusy with the worker's
    retry_after; a type this side does not know is the plain ValueError with its message, as before the
    frame carried types."""
    try:
        data = json.loads(body)
        kind, message, retry_after = str(data["type"]), str(data["message"]), int(data["retry_after"])
    except (ValueError, KeyError, TypeError) as exc:
        return MemoryOSError(f"unreadable busy reply from the worker ({exc}): {body[:200]}")
    if kind == FactsBusy.__name__:
        return FactsBusy(message, retry_after=retry_after)
    return ValueError(message)

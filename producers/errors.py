"""Errors a chat backend may need to catch, each telling the user what to do."""

from __future__ import annotations


class MemoryOSError(Exception):
    """Base class for errors raised by memoryos producers and workers."""


class RedisUnavailableError(MemoryOSError, ConnectionError):
    """Redis could not be reached; nothing was reported as stored that was not."""


class FactsBusy(MemoryOSError, ValueError):
    """An extraction is writing this user's facts: nothing was changed; retry after `retry_after` seconds.
    Defined here, not beside the edits (memoryos_workers/ops/fact_ops.py), so a RemoteMemory raises the same
    type as a LocalMemory: the RPC reply carries its type and `retry_after` (producers.wire.rpc.busy_reply).
    A ValueError too, so the inspector and MCP show it to the person as they show bad input."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def redact_url(url: str) -> str:
    """A Redis (or broker) URL with any password removed, safe for logs and error messages; also a cluster
    URL with several hosts (redis+cluster://user:password@h1:p1,h2:p2)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" not in authority:
        return url
    userinfo, _, hosts = authority.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user + ':' if user else ''}***@{hosts}{tail}"

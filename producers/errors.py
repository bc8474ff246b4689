"""Errors a chat backend may need to catch, each telling the user what to do."""

from __future__ import annotations


class MemoryOSError(Exception):
    """Base class for errors raised by memoryos producers and workers."""


class RedisUnavailableError(MemoryOSError, ConnectionError):
    """Redis could not be reached; nothing was reported as stored that was not."""


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

"""Errors a chat backend may need to catch, each telling the user what to do."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


class MemoryOSError(Exception):
    """Base class for errors raised by memoryos producers and workers."""


class RedisUnavailableError(MemoryOSError, ConnectionError):
    """Redis could not be reached; nothing was reported as stored that was not."""


def redact_url(url: str) -> str:
    """A Redis URL with any password removed, safe for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None and "@" not in parts.netloc:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))

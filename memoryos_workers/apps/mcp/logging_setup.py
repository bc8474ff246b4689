"""Logging for the MCP server. On stdio, stdout is the protocol: one stray line there breaks the
client's session, so every log line goes to stderr, whatever handlers a library installed before."""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"


def configure_logging(level: str = "INFO") -> None:
    """Everything to stderr; handlers that might write to stdout are replaced."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())

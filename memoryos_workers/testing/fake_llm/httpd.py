"""The HTTP side of the fake LLM: a stdlib threading server that routes a few OpenAI endpoints.

Only the standard library, so the fake runs wherever the tests run. The server decides nothing: it
hands each request to a :class:`ChatBackend` (the FakeLLM) and writes the :class:`Reply` it gets, or
the :class:`StreamReply`: server-sent events in chunked encoding, paced like a model that generates
``1 / interval`` tokens a second, and going silent where told to, as a stalled server does.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from memoryos_workers.testing.fake_llm.faults import error_body

log = logging.getLogger(__name__)


class Reply:
    """What the handler writes: status, JSON body, extra headers."""

    __slots__ = ("status", "body", "headers")

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}


@dataclass
class StreamReply:
    """A streamed answer: its chunks in order (``[DONE]`` follows when the stream ends normally)."""

    events: list[dict[str, Any]]
    stopping: threading.Event  # set when the fake stops: a paced or stalled stream ends at once
    interval: float = 0.0  # seconds before each content chunk after the first, and before the finish
    stall_after: int | None = None  # content chunks written before the stream goes silent
    stall_seconds: float = 60.0  # the longest a stalled stream stays open (the client hangs up first)
    headers: dict[str, str] = field(default_factory=dict)

    def write(self, wfile: Any, connection: socket.socket) -> bool:
        """Writes the events as chunked server-sent events; False when left unfinished (stalled, or
        the fake stopping), so the connection must be closed."""
        content = len(self.events) - (2 if self.events and not self.events[-1]["choices"] else 1)
        stall_at = None if self.stall_after is None else min(max(self.stall_after, 0), content)
        for i, event in enumerate(self.events):
            if i == stall_at:  # a short answer stalls before its finish
                self._stall(connection)
                return False
            if 0 < i <= content and self.interval and self.stopping.wait(self.interval):
                return False
            _write_chunk(wfile, b"data: " + json.dumps(event).encode() + b"\n\n")
        _write_chunk(wfile, b"data: [DONE]\n\n")
        _write_chunk(wfile, b"")  # the chunked encoding's end
        return True

    def _stall(self, connection: socket.socket) -> None:
        """Silence until the client hangs up, stall_seconds pass or the fake stops."""
        deadline = time.monotonic() + self.stall_seconds
        while time.monotonic() < deadline and not self.stopping.is_set():
            readable, _, _ = select.select([connection], [], [], 0.05)
            if readable:
                try:
                    if connection.recv(1, socket.MSG_PEEK) == b"":
                        return  # the client closed its end
                except OSError:
                    return


def _write_chunk(wfile: Any, data: bytes) -> None:
    wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    wfile.flush()


class ChatBackend(Protocol):
    """What the server asks of the fake behind it; a Protocol so this module never imports FakeLLM."""

    def models_reply(self) -> Reply:
        """``GET /v1/models``."""
        ...

    def model_reply(self, model_id: str) -> Reply:
        """``GET /v1/models/<id>``."""
        ...

    def stats(self) -> dict[str, Any]:
        """``GET /_fake/stats``: the counters, for standalone runs."""
        ...

    def handle_chat(self, raw: bytes, authorization: str | None) -> Reply | StreamReply | None:
        """``POST /v1/chat/completions``; None drops the connection (the fake is stopping)."""
        ...


class Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its backend and tracks open connections.

    Connections are tracked so :meth:`close_connections` can shut down idle keep-alive sockets when
    the fake stops, and leave no handler thread blocked on a read.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # benchmarks open many connections at once

    def __init__(self, address: tuple[str, int], backend: ChatBackend) -> None:
        self.backend = backend
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up (its timeout, a stalled stream given up) is normal here: logged, not
        printed; anything else is printed as the stdlib does."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            log.debug("client %s hung up", client_address)
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Shut down every open connection, idle keep-alive ones included (after ``shutdown()``)."""
        with self.connections_lock:
            connections = list(self.connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    """Routes the few endpoints; all logic lives in the backend so it is easy to follow."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the openai client pools connections
    server_version = "FakeLLM/1.0"
    timeout = 120  # idle keep-alive connections are dropped eventually
    server: Server

    def setup(self) -> None:
        super().setup()
        # Without TCP_NODELAY, headers and body go out as two segments and the client's delayed
        # ACK adds ~40 ms to every request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # stdlib signature
        """Route access logs to ``logging`` (never stderr); the request line carries no secrets."""
        log.debug("%s - %s", self.address_string(), format % args)

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/")

    def do_GET(self) -> None:  # stdlib naming
        backend = self.server.backend
        path = self._path()
        if path in ("/v1/models", "/models"):
            self._send(backend.models_reply())
        elif path.startswith(("/v1/models/", "/models/")):
            self._send(backend.model_reply(path.rsplit("/", 1)[1]))
        elif path == "/_fake/stats":
            self._send(Reply(200, backend.stats()))
        else:
            self._send(Reply(404, error_body(404, f"Unknown path {path}")))

    def do_POST(self) -> None:  # stdlib naming
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        path = self._path()
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._send(Reply(404, error_body(404, f"Unknown path {path}")))
            return
        reply = self.server.backend.handle_chat(raw, self.headers.get("Authorization"))
        if reply is None:  # server stopping during a hang/latency: drop the connection
            self.close_connection = True
            return
        self._send(reply)

    def _send(self, reply: Reply | StreamReply) -> None:
        if isinstance(reply, StreamReply):
            self._send_stream(reply)
            return
        payload = json.dumps(reply.body).encode("utf-8")
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:  # client gave up (timeout) or the server is stopping
            self.close_connection = True

    def _send_stream(self, reply: StreamReply) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if not reply.write(self.wfile, self.connection):
                self.close_connection = True
        except OSError:  # the client hung up mid-stream (its timeout) or the server is stopping
            self.close_connection = True

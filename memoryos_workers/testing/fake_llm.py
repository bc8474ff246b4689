"""A fake OpenAI-compatible chat-completions server for tests and local benchmarks.

Why a real HTTP server instead of mocking the ``openai`` client: the workers talk to the LLM through
the real ``openai`` client, and what we need to test is exactly what the client does on the wire --
which ``response_format`` it sends, how it reacts to 400/429/500 status codes, timeouts, truncated
JSON, the ``json_schema`` -> ``json_object`` fallback. Mocks would test our assumptions about the
client; a server on 127.0.0.1 tests the client itself.

Usage::

    with FakeLLM() as llm:
        client = openai.OpenAI(base_url=llm.base_url, api_key="test", max_retries=0)
        llm.responder = lambda request: {"topics": ["weather"]}
        llm.queue_responses([Fault.http(429), {"topics": []}])
        ...
        assert llm.calls == 2

Standalone (manual use, benchmarks)::

    python -m memoryos_workers.testing.fake_llm --port 0 --latency 0.5      # prints the base URL on stdout

Only the standard library is used so the module can run anywhere the tests run.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import logging
import math
import random
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["DEFAULT_TEXT_ANSWER", "FakeLLM", "Fault", "estimate_tokens", "generate_from_schema"]

log = logging.getLogger(__name__)

#: Plain-text answer when no response_format is requested and nothing scripted the answer.
DEFAULT_TEXT_ANSWER = "This is a fake answer."
#: Fallback truncated JSON for malformed answers (when truncating the real answer stays valid JSON).
_MALFORMED_FALLBACK = '{"topics": ['

#: ``responder(request_body) -> str | dict | list | Fault | None``: a dict/list is serialized as the
#: content, a str used verbatim, a Fault injects that fault, None falls back to the default generator.
Responder = Callable[[dict[str, Any]], Any]


# --------------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour for one request (items of :meth:`FakeLLM.queue_responses`).

    Frozen value objects so a test can reuse the same Fault several times in a script.
    Build them with the class methods rather than the constructor.
    """

    kind: str  # "http" | "timeout" | "malformed" | "text" | "delay"
    status: int = 200
    message: str | None = None
    retry_after: float | None = None
    content: str | None = None
    seconds: float | None = None

    @classmethod
    def http(cls, status: int, message: str | None = None, retry_after: float | None = None) -> Fault:
        """Answer with HTTP ``status`` and an OpenAI-style error body.

        For 429 a ``Retry-After`` header is always sent (``retry_after`` or the server's
        ``retry_after`` knob) because rate-limit handling in clients keys off it.
        """
        if not 400 <= status <= 599:
            raise ValueError(f"Fault.http needs an error status (400..599), got {status}")
        return cls(kind="http", status=status, message=message, retry_after=retry_after)

    @classmethod
    def timeout(cls, seconds: float | None = None) -> Fault:
        """Hang ``seconds`` (default: the server's ``hang_seconds``) before answering normally.

        The client's own timeout is expected to fire first; the hang is cut short by
        :meth:`FakeLLM.stop` so a test suite never waits for it.
        """
        return cls(kind="timeout", seconds=seconds)

    @classmethod
    def malformed(cls, content: str | None = None) -> Fault:
        """Answer 200 with content that does not parse (truncated JSON by default)."""
        return cls(kind="malformed", content=content)

    @classmethod
    def text(cls, content: str) -> Fault:
        """Answer 200 with exactly ``content``, whatever response_format was requested."""
        return cls(kind="text", content=content)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Answer normally, but only after ``seconds`` (a per-request ``latency``)."""
        return cls(kind="delay", seconds=seconds)


# --------------------------------------------------------------------------------------------------
# Deterministic JSON-schema instance generator
# --------------------------------------------------------------------------------------------------

_MAX_DEPTH = 12
_STRING_FORMATS: dict[str, str] = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "duration": "P1D",
    "email": "x@example.com",
    "idn-email": "x@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
_PATTERN_CANDIDATES = ("x", "a", "A", "0", "1", "aa", "abc", "a1", "x-1", "a_b", "aaaa", "0000", "ab12")


def generate_from_schema(schema: Mapping[str, Any]) -> Any:
    """Return a deterministic instance of ``schema`` (JSON Schema as emitted by pydantic v2).

    Why not a library: only the standard library is allowed, and the subset pydantic emits
    (objects, arrays, enums, const, anyOf/oneOf/allOf, $ref into $defs, numeric/string bounds,
    tuples via prefixItems) is small. The instance is the *simplest* valid one -- every property
    present, first enum member, first non-null union branch -- so tests can predict it.
    """
    return _Generator(schema).generate(schema, depth=0, variant=0)


class _Generator:
    """Walks a schema; keeps the root so ``$ref`` pointers can be resolved."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def resolve(self, ref: str) -> Mapping[str, Any]:
        """Resolve a local JSON pointer such as ``#/$defs/Topic``."""
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref are supported, got {ref!r}")
        node: Any = self.root
        for part in ref.lstrip("#").split("/"):
            if not part:
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node

    def generate(self, schema: Any, depth: int, variant: int) -> Any:
        """Generate one instance; ``variant`` makes array items distinct (uniqueItems)."""
        if schema is True or not isinstance(schema, Mapping):
            return "x"
        if "$ref" in schema:
            target = self.resolve(schema["$ref"])
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            merged = {**target, **siblings} if siblings else target
            return self.generate(merged, depth + 1, variant)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema and schema["enum"]:
            values = schema["enum"]
            return values[variant % len(values)]
        for key in ("anyOf", "oneOf"):
            if key in schema and schema[key]:
                return self.generate(self._pick_branch(schema[key], depth), depth + 1, variant)
        if "allOf" in schema and schema["allOf"]:
            return self.generate(self._merge_all_of(schema), depth + 1, variant)

        schema_type = schema.get("type")
        if isinstance(schema_type, list):
            non_null = [t for t in schema_type if t != "null"]
            if not non_null or (depth > _MAX_DEPTH and "null" in schema_type):
                return None
            schema_type = non_null[0]
        if schema_type is None:
            if "properties" in schema or "additionalProperties" in schema:
                schema_type = "object"
            elif "items" in schema or "prefixItems" in schema:
                schema_type = "array"
            else:
                return "x"  # `Any`: pydantic emits {}
        if schema_type == "object":
            return self._object(schema, depth, variant)
        if schema_type == "array":
            return self._array(schema, depth, variant)
        if schema_type == "string":
            return self._string(schema, variant)
        if schema_type == "integer":
            return int(self._number(schema, variant, integer=True))
        if schema_type == "number":
            return self._number(schema, variant, integer=False)
        if schema_type == "boolean":
            return variant % 2 == 0
        if schema_type == "null":
            return None
        return "x"

    def _pick_branch(self, branches: list[Any], depth: int) -> Any:
        """First non-null branch -- or null when recursion gets deep (recursive models)."""
        non_null = [b for b in branches if not (isinstance(b, Mapping) and b.get("type") == "null")]
        if depth > _MAX_DEPTH and len(non_null) < len(branches):
            return {"type": "null"}
        return non_null[0] if non_null else {"type": "null"}

    def _merge_all_of(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        """Shallow merge of allOf members (older pydantic wraps a $ref in allOf to add a description)."""
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        properties: dict[str, Any] = dict(merged.get("properties", {}))
        required: list[str] = list(merged.get("required", []))
        for part in schema["allOf"]:
            while isinstance(part, Mapping) and "$ref" in part:
                part = {**self.resolve(part["$ref"]), **{k: v for k, v in part.items() if k != "$ref"}}
            if not isinstance(part, Mapping):
                continue
            for key, value in part.items():
                if key == "properties":
                    properties.update(value)
                elif key == "required":
                    required.extend(r for r in value if r not in required)
                else:
                    merged.setdefault(key, value)
        if properties:
            merged["properties"] = properties
        if required:
            merged["required"] = required
        return merged

    def _object(self, schema: Mapping[str, Any], depth: int, variant: int) -> dict[str, Any]:
        properties: Mapping[str, Any] = schema.get("properties", {})
        result = {name: self.generate(sub, depth + 1, 0) for name, sub in properties.items()}
        for name in schema.get("required", []):  # required but undeclared (rare): anything goes
            result.setdefault(name, "x")
        extra = schema.get("additionalProperties")
        i = 0
        while len(result) < int(schema.get("minProperties", 0)):
            key = f"key{variant}_{i}" if variant else f"key{i}"
            result[key] = self.generate(extra, depth + 1, i) if isinstance(extra, Mapping) else "x"
            i += 1
        return result

    def _array(self, schema: Mapping[str, Any], depth: int, variant: int) -> list[Any]:
        prefix: list[Any] = list(schema.get("prefixItems", []))
        min_items = int(schema.get("minItems", 0 if depth > _MAX_DEPTH else 1))
        max_items = schema.get("maxItems")
        count = max(min_items, len(prefix)) if prefix else min_items
        if max_items is not None:
            count = min(count, int(max_items))
        items_schema = schema.get("items", {})
        out: list[Any] = []
        for i in range(count):
            sub = prefix[i] if i < len(prefix) else items_schema
            if sub is False:
                break
            out.append(self.generate(sub, depth + 1, i + variant))
        return out

    def _string(self, schema: Mapping[str, Any], variant: int) -> str:
        fmt = schema.get("format")
        if fmt in _STRING_FORMATS and variant == 0:
            return _STRING_FORMATS[fmt]
        value = "x" if variant == 0 else f"x{variant}"
        min_len = int(schema.get("minLength", 0))
        max_len = schema.get("maxLength")
        pattern = schema.get("pattern")
        compiled = None
        if pattern:
            try:
                compiled = re.compile(pattern)
            except re.error:
                compiled = None
        if compiled is not None and not compiled.search(value):
            value = _string_for_pattern(compiled, variant)
        if len(value) < min_len:
            padded = value + "x" * (min_len - len(value))
            if compiled is None or compiled.search(padded):
                value = padded
        if max_len is not None and len(value) > int(max_len):
            value = value[: int(max_len)]
        return value

    def _number(self, schema: Mapping[str, Any], variant: int, *, integer: bool) -> float | int:
        """Smallest in-range value (``minimum`` or 0), honouring exclusive bounds and multipleOf."""
        lo, lo_excl = _tightest(schema.get("minimum"), schema.get("exclusiveMinimum"), lower=True)
        hi, hi_excl = _tightest(schema.get("maximum"), schema.get("exclusiveMaximum"), lower=False)
        if integer:
            if lo is not None:
                lo, lo_excl = (math.floor(lo) + 1 if lo_excl else math.ceil(lo)), False
            if hi is not None:
                hi, hi_excl = (math.ceil(hi) - 1 if hi_excl else math.floor(hi)), False

        def ok(v: float) -> bool:
            if lo is not None and (v < lo or (lo_excl and v == lo)):
                return False
            return not (hi is not None and (v > hi or (hi_excl and v == hi)))

        if lo is not None:
            base: float = lo + 1 if lo_excl else lo
            if not ok(base) and hi is not None:
                base = (lo + hi) / 2
        elif hi is not None:
            base = 0 if ok(0) else hi - 1
        else:
            base = 0
        value = base + variant if ok(base + variant) else base
        multiple = schema.get("multipleOf")
        if multiple:
            up = math.ceil(value / multiple) * multiple
            value = up if ok(up) else math.floor(value / multiple) * multiple
        return int(value) if integer else float(value)


def _tightest(inclusive: Any, exclusive: Any, *, lower: bool) -> tuple[float | None, bool]:
    """Combine an inclusive and an exclusive bound into the tighter one (value, is_exclusive)."""
    def num(v: Any) -> float | None:
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    inc, exc = num(inclusive), num(exclusive)
    if inc is None:
        return exc, exc is not None
    if exc is None:
        return inc, False
    if lower:
        return (exc, True) if exc >= inc else (inc, False)
    return (exc, True) if exc <= inc else (inc, False)


_CATEGORY_CHARS = {
    "CATEGORY_DIGIT": "0",
    "CATEGORY_NOT_DIGIT": "a",
    "CATEGORY_SPACE": " ",
    "CATEGORY_NOT_SPACE": "a",
    "CATEGORY_WORD": "a",
    "CATEGORY_NOT_WORD": "-",
}


def _string_for_pattern(compiled: re.Pattern[str], variant: int) -> str:
    """A string matching ``compiled`` (``pattern`` constraint), built from the parsed regex.

    Walks the stdlib's own regex parse tree (first branch, minimum repeats, first char of a
    class), then verifies with ``search``; falls back to a few fixed candidates. Good enough for
    the codes/ids patterns that appear in response models.
    """
    try:
        from re import _parser as sre_parse  # type: ignore[attr-defined]  # Python >= 3.11
    except ImportError:  # pragma: no cover - Python 3.10
        import sre_parse  # type: ignore[no-redef]

    def emit(items: Any) -> str:
        out: list[str] = []
        for op, av in items:
            name = str(op)
            if name == "LITERAL":
                out.append(chr(av))
            elif name == "NOT_LITERAL":
                out.append("x" if chr(av) != "x" else "y")
            elif name == "ANY":
                out.append("x")
            elif name == "IN":
                out.append(in_class(av))
            elif name == "CATEGORY":
                out.append(_CATEGORY_CHARS.get(str(av), "a"))
            elif name == "BRANCH":
                out.append(emit(av[1][0]))
            elif name == "SUBPATTERN":
                out.append(emit(av[-1]))
            elif name == "ATOMIC_GROUP":
                out.append(emit(av))
            elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                low, _high, sub = av
                out.append(emit(sub) * low)
            # AT (anchors), ASSERT, ASSERT_NOT, GROUPREF...: contribute nothing
        return "".join(out)

    def in_class(items: Any) -> str:
        negate = bool(items) and str(items[0][0]) == "NEGATE"
        if negate:
            for candidate in "xa0_- ":
                if not _in_set(items[1:], candidate):
                    return candidate
            return "x"
        op, av = items[0]
        if str(op) == "LITERAL":
            return chr(av)
        if str(op) == "RANGE":
            return chr(av[0])
        if str(op) == "CATEGORY":
            return _CATEGORY_CHARS.get(str(av), "a")
        return "x"

    def _in_set(items: Any, char: str) -> bool:
        code = ord(char)
        for op, av in items:
            name = str(op)
            if name == "LITERAL" and av == code:
                return True
            if name == "RANGE" and av[0] <= code <= av[1]:
                return True
            if name == "CATEGORY" and re.fullmatch(_CATEGORY_REGEX.get(str(av), "(?!)"), char):
                return True
        return False

    candidates: list[str] = []
    try:
        candidates.append(emit(sre_parse.parse(compiled.pattern, compiled.flags)))
    except Exception:  # private parser API: any surprise just means "use fallbacks"
        pass
    candidates.extend(_PATTERN_CANDIDATES)
    for candidate in candidates:
        if variant:
            varied = f"{candidate}{variant}"
            if compiled.search(varied):
                return varied
        if compiled.search(candidate):
            return candidate
    return "x"


_CATEGORY_REGEX = {
    "CATEGORY_DIGIT": r"\d",
    "CATEGORY_NOT_DIGIT": r"\D",
    "CATEGORY_SPACE": r"\s",
    "CATEGORY_NOT_SPACE": r"\S",
    "CATEGORY_WORD": r"\w",
    "CATEGORY_NOT_WORD": r"\W",
}


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def estimate_tokens(text: str) -> int:
    """Token estimate used for ``usage``: ceil(len/4) -- the usual rule of thumb for English."""
    return math.ceil(len(text) / 4)


def _message_text(messages: Any) -> str:
    """Concatenate the text of all messages (string content or a list of text parts)."""
    parts: list[str] = []
    if not isinstance(messages, list):
        return ""
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    parts.append(part["text"])
    return "".join(parts)


def _error_type(status: int) -> tuple[str, str | None]:
    """OpenAI's error ``type``/``code`` for a status, so clients' error mapping sees familiar bodies."""
    if status == 401:
        return "invalid_request_error", "invalid_api_key"
    if status == 403:
        return "permission_error", None
    if status == 404:
        return "invalid_request_error", "not_found"
    if status == 429:
        return "requests", "rate_limit_exceeded"
    if status >= 500:
        return "server_error", None
    return "invalid_request_error", None


def _error_body(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    err_type, default_code = _error_type(status)
    return {"error": {"message": message, "type": err_type, "param": param, "code": code or default_code}}


def _default_error_message(status: int) -> str:
    if status == 429:
        return "Rate limit reached for requests (fake). Please try again later."
    if status >= 500:
        return f"The server had an error while processing your request (fake HTTP {status})."
    return f"Fake error (HTTP {status})."


def _truncate_json(valid: str) -> str:
    """Cut a JSON document in half so it no longer parses (what a cut-off stream looks like)."""
    for cut in (len(valid) // 2, len(valid) - 1, 1):
        candidate = valid[: max(cut, 1)]
        try:
            json.loads(candidate)
        except ValueError:
            return candidate
    return _MALFORMED_FALLBACK


def _format_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------


class _Reply:
    """What the handler writes: status, JSON body, extra headers."""

    __slots__ = ("status", "body", "headers")

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its FakeLLM and tracks open connections.

    Connections are tracked so :meth:`FakeLLM.stop` can shut down idle keep-alive sockets and
    leave no handler thread blocked on a read.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # benchmarks open many connections at once

    def __init__(self, address: tuple[str, int], fake: FakeLLM) -> None:
        self.fake = fake
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    """Routes the few endpoints; all logic lives in FakeLLM so it is easy to follow."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the openai client pools connections
    server_version = "FakeLLM/1.0"
    timeout = 120  # idle keep-alive connections are dropped eventually
    server: _Server

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
        fake = self.server.fake
        path = self._path()
        if path in ("/v1/models", "/models"):
            self._send(fake._models_reply())
        elif path.startswith(("/v1/models/", "/models/")):
            self._send(fake._model_reply(path.rsplit("/", 1)[1]))
        elif path == "/_fake/stats":
            self._send(_Reply(200, fake.stats()))
        else:
            self._send(_Reply(404, _error_body(404, f"Unknown path {path}")))

    def do_POST(self) -> None:  # stdlib naming
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        path = self._path()
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._send(_Reply(404, _error_body(404, f"Unknown path {path}")))
            return
        reply = self.server.fake._handle_chat(raw, self.headers.get("Authorization"))
        if reply is None:  # server stopping during a hang/latency: drop the connection
            self.close_connection = True
            return
        self._send(reply)

    def _send(self, reply: _Reply) -> None:
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


class FakeLLM:
    """Fake OpenAI chat-completions endpoint on 127.0.0.1 with scriptable answers and faults.

    Knobs (plain attributes, read on every request, so they may be changed mid-test):
      ``responder``, ``latency``, ``error_rate``, ``error_status``, ``timeout_rate``, ``hang_seconds``,
      ``malformed_rate``, ``retry_after``, ``reject_json_schema``, ``require_auth``, ``model``,
      ``text_answer``, and ``seed`` (a property: setting it re-seeds the fault RNG).

    Counters (thread-safe, updated under a lock): ``calls``, ``successes``, ``failures``,
    ``prompt_tokens``, ``completion_tokens``, ``unauthorized``, ``faults`` (Counter by kind),
    ``statuses`` (Counter by HTTP status) and ``requests`` (copy of the parsed request bodies,
    ``len(requests) == calls``).

    Per request, the answer is decided in this order: auth (401) -> body validation (400) ->
    ``reject_json_schema`` (400) -> next queued item -> one RNG draw against
    error_rate / timeout_rate / malformed_rate -> responder -> default generator. Validation
    rejections consume neither the queue nor the RNG, so a client's fallback request gets the
    scripted answer and seeded fault sequences do not shift.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        model: str = "fake-model",
        latency: float = 0.0,
        error_rate: float = 0.0,
        error_status: int = 500,
        timeout_rate: float = 0.0,
        hang_seconds: float = 60.0,
        malformed_rate: float = 0.0,
        retry_after: float = 1.0,
        seed: int | None = 0,
        reject_json_schema: bool = False,
        require_auth: bool = True,
        responder: Responder | None = None,
        text_answer: str = DEFAULT_TEXT_ANSWER,
    ) -> None:
        self.port = port
        self.model = model
        self.latency = latency
        self.error_rate = error_rate
        self.error_status = error_status
        self.timeout_rate = timeout_rate
        self.hang_seconds = hang_seconds
        self.malformed_rate = malformed_rate
        self.retry_after = retry_after
        self.reject_json_schema = reject_json_schema
        self.require_auth = require_auth
        self.responder: Responder | None = responder
        self.text_answer = text_answer

        self._lock = threading.Lock()
        self._seed = seed
        self._rng = random.Random(seed)
        self._queue: collections.deque[Any] = collections.deque()
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._reset_counters()

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> FakeLLM:
        """Bind 127.0.0.1 (port 0 = a free port chosen by the OS) and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeLLM:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; wakes hanging requests and closes open connections so tests end fast."""
        server = self._server
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with server.connections_lock:
            connections = list(server.connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1`` -- what to give ``openai.OpenAI(base_url=...)``."""
        if self._server is None:
            raise RuntimeError("FakeLLM is not running; use `with FakeLLM() as llm:` or .start()")
        return f"http://127.0.0.1:{self.port}/v1"

    def client(
        self, *, timeout: float = 5.0, max_retries: int = 0, api_key: str = "test", **kwargs: Any
    ) -> Any:
        """A real ``openai.OpenAI`` client pointed at this server (no retries unless asked)."""
        import openai  # imported lazily: the server itself needs only the stdlib

        return openai.OpenAI(
            base_url=self.base_url, api_key=api_key, max_retries=max_retries, timeout=timeout, **kwargs
        )

    # -- scripting ---------------------------------------------------------------------------------

    @property
    def seed(self) -> int | None:
        """Seed of the fault RNG; assigning re-seeds, so the same seed replays the same faults."""
        return self._seed

    @seed.setter
    def seed(self, value: int | None) -> None:
        with self._lock:
            self._seed = value
            self._rng = random.Random(value)

    def queue_responses(self, items: Iterable[Any]) -> None:
        """Script the next answers in order: dict/list (serialized), str (verbatim), None
        (default answer) or :class:`Fault`. Queued items win over the fault rates and the responder."""
        with self._lock:
            self._queue.extend(items)

    @property
    def pending(self) -> int:
        """Number of queued answers not consumed yet (assert 0 to check a script ran fully)."""
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        """Zero the counters, forget recorded requests, clear the queue and re-seed the RNG.

        Knobs (rates, responder, ...) are kept: they are configuration, not state.
        """
        with self._lock:
            self._queue.clear()
            self._rng = random.Random(self._seed)
            self._reset_counters()

    def _reset_counters(self) -> None:
        self.calls = 0
        self.successes = 0
        self.failures = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.unauthorized = 0
        self.faults: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[int] = collections.Counter()
        self._requests: list[dict[str, Any]] = []

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Parsed bodies of all chat-completions requests, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> dict[str, Any]:
        """The most recent parsed request body."""
        with self._lock:
            if not self._requests:
                raise LookupError("no chat-completions request received yet")
            return self._requests[-1]

    def stats(self) -> dict[str, Any]:
        """Counters as a JSON-able dict (also served at GET /_fake/stats for standalone runs)."""
        with self._lock:
            return {
                "calls": self.calls,
                "successes": self.successes,
                "failures": self.failures,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "unauthorized": self.unauthorized,
                "faults": dict(self.faults),
                "statuses": {str(k): v for k, v in self.statuses.items()},
            }

    # -- request handling --------------------------------------------------------------------------

    def _models_reply(self) -> _Reply:
        return _Reply(200, {"object": "list", "data": [self._model_object(self.model)]})

    def _model_reply(self, model_id: str) -> _Reply:
        if model_id != self.model:
            message = f"The model '{model_id}' does not exist"
            return _Reply(404, _error_body(404, message, code="model_not_found"))
        return _Reply(200, self._model_object(model_id))

    @staticmethod
    def _model_object(model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": "fake-llm"}

    def _fail(self, status: int, message: str, *, kind: str, param: str | None = None,
              headers: dict[str, str] | None = None) -> _Reply:
        """Count a failure and build an OpenAI-style error reply. Caller holds no lock."""
        with self._lock:
            self.failures += 1
            self.faults[kind] += 1
            self.statuses[status] += 1
        return _Reply(status, _error_body(status, message, param=param), headers)

    def _sleep(self, seconds: float) -> bool:
        """Interruptible sleep; False when the server is stopping (then the request is dropped)."""
        if seconds <= 0:
            return not self._stopping.is_set()
        return not self._stopping.wait(seconds)

    def _handle_chat(self, raw: bytes, authorization: str | None) -> _Reply | None:
        """Decide and build the answer to one chat-completions request (see class docstring)."""
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        request: dict[str, Any] = body if isinstance(body, dict) else {}
        with self._lock:
            self.calls += 1
            self._requests.append(request)

        # 1. Auth: a non-empty Bearer token. The key itself is never stored nor logged.
        token = ""
        if authorization and authorization.startswith("Bearer "):
            token = authorization[len("Bearer "):].strip()
        if self.require_auth and not token:
            with self._lock:
                self.unauthorized += 1
            return self._fail(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                kind="unauthorized",
            )

        # 2. Body validation, like the real API (catches client bugs early).
        if not isinstance(body, dict):
            return self._fail(400, "We could not parse the JSON body of your request.", kind="bad_request")
        if body.get("stream"):
            return self._fail(400, "stream=true is not supported by the fake LLM", kind="bad_request",
                              param="stream")
        for required in ("model", "messages"):
            if required not in body:
                return self._fail(400, f"Missing required parameter: '{required}'.", kind="bad_request",
                                  param=required)
        response_format = body.get("response_format") or {}
        fmt_type = response_format.get("type", "text") if isinstance(response_format, dict) else "text"
        if fmt_type == "json_schema":
            spec = response_format.get("json_schema")
            if not isinstance(spec, dict) or not spec.get("name"):
                return self._fail(400, "Missing required parameter: 'response_format.json_schema.name'.",
                                  kind="bad_request", param="response_format.json_schema.name")
            if self.reject_json_schema:
                return self._fail(400, "response_format json_schema is not supported by this model",
                                  kind="json_schema_rejected", param="response_format")

        # 3. Scripted answer, else one seeded draw against the fault rates.
        with self._lock:
            if self._queue:
                item = self._queue.popleft()
            else:
                item = self._draw_fault()

        if not self._sleep(self.latency):
            return None
        if isinstance(item, Fault):
            return self._apply_fault(item, request, fmt_type)
        if item is None:
            return self._answer(request, fmt_type)
        return self._success(request, self._as_content(item))

    def _draw_fault(self) -> Fault | None:
        """One RNG draw per unscripted request, mapped onto consecutive rate intervals. Lock held."""
        r = self._rng.random()
        if r < self.error_rate:
            return Fault.http(self.error_status)
        r -= self.error_rate
        if r < self.timeout_rate:
            return Fault.timeout()
        r -= self.timeout_rate
        if r < self.malformed_rate:
            return Fault.malformed()
        return None

    def _apply_fault(self, fault: Fault, request: dict[str, Any], fmt_type: str) -> _Reply | None:
        if fault.kind == "http":
            headers: dict[str, str] = {}
            retry_after = fault.retry_after
            if retry_after is None and fault.status == 429:
                retry_after = self.retry_after
            if retry_after is not None:
                headers["Retry-After"] = _format_seconds(retry_after)
            return self._fail(fault.status, fault.message or _default_error_message(fault.status),
                              kind=f"http_{fault.status}", headers=headers)
        if fault.kind == "timeout":
            with self._lock:
                self.failures += 1
                self.faults["timeout"] += 1
            seconds = self.hang_seconds if fault.seconds is None else fault.seconds
            if not self._sleep(seconds):
                return None
            return self._answer(request, fmt_type, count=False, allow_fault=False)
        if fault.kind == "delay":
            if not self._sleep(fault.seconds or 0.0):
                return None
            return self._answer(request, fmt_type, allow_fault=False)
        if fault.kind == "malformed":
            with self._lock:
                self.failures += 1
                self.faults["malformed"] += 1
            content = fault.content
            if content is None:
                valid = self._default_content(request, fmt_type)
                content = _truncate_json(valid) if fmt_type != "text" else valid[: max(1, len(valid) // 2)]
            return self._completion(request, content)
        if fault.kind == "text":
            return self._success(request, fault.content or "")
        raise ValueError(f"unknown fault kind {fault.kind!r}")

    def _answer(
        self, request: dict[str, Any], fmt_type: str, *, count: bool = True, allow_fault: bool = True
    ) -> _Reply | None:
        """Responder first, default generator as fallback.

        ``allow_fault`` is False for the answer that follows a timeout/delay fault, so a responder
        that always returns a Fault cannot loop forever; its Fault then means "default answer".
        """
        result: Any = None
        if self.responder is not None:
            try:
                result = self.responder(request)
            except Exception as exc:  # a broken responder must show up in the test, not hang it
                log.exception("FakeLLM responder raised")
                return self._fail(500, f"fake responder raised {type(exc).__name__}: {exc}",
                                  kind="responder_error")
        if isinstance(result, Fault):
            if allow_fault:
                return self._apply_fault(result, request, fmt_type)
            result = None
        content = self._default_content(request, fmt_type) if result is None else self._as_content(result)
        return self._success(request, content) if count else self._completion(request, content)

    @staticmethod
    def _as_content(item: Any) -> str:
        if isinstance(item, str):
            return item
        return json.dumps(item)

    def _default_content(self, request: dict[str, Any], fmt_type: str) -> str:
        if fmt_type == "json_schema":
            schema = request["response_format"]["json_schema"].get("schema") or {}
            return json.dumps(generate_from_schema(schema))
        if fmt_type == "json_object":
            return "{}"
        return self.text_answer

    def _success(self, request: dict[str, Any], content: str) -> _Reply:
        with self._lock:
            self.successes += 1
        return self._completion(request, content)

    def _completion(self, request: dict[str, Any], content: str) -> _Reply:
        """A chat.completion object; tokens are added to the counters when the answer is built."""
        prompt_tokens = estimate_tokens(_message_text(request.get("messages")))
        completion_tokens = estimate_tokens(content)
        with self._lock:
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            self.statuses[200] += 1
            completion_id = f"chatcmpl-fake{self.port}-{next(self._ids):06d}"
        body = {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model") or self.model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return _Reply(200, body, {"x-request-id": completion_id})


# --------------------------------------------------------------------------------------------------
# Standalone
# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run until SIGINT/SIGTERM; print the base URL first so scripts can read it from stdout."""
    parser = argparse.ArgumentParser(
        prog="python -m memoryos_workers.testing.fake_llm", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--error-status", type=int, default=500)
    parser.add_argument("--timeout-rate", type=float, default=0.0)
    parser.add_argument("--hang-seconds", type=float, default=60.0)
    parser.add_argument("--malformed-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reject-json-schema", action="store_true")
    parser.add_argument("--no-auth", action="store_true", help="accept requests without a Bearer token")
    parser.add_argument("-v", "--verbose", action="store_true", help="log requests to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr)

    llm = FakeLLM(
        port=args.port,
        model=args.model,
        latency=args.latency,
        error_rate=args.error_rate,
        error_status=args.error_status,
        timeout_rate=args.timeout_rate,
        hang_seconds=args.hang_seconds,
        malformed_rate=args.malformed_rate,
        seed=args.seed,
        reject_json_schema=args.reject_json_schema,
        require_auth=not args.no_auth,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with llm:
        print(llm.base_url, flush=True)
        try:
            while not done.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        print(json.dumps(llm.stats()), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

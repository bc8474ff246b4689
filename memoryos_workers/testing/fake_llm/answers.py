"""How the fake LLM answers one chat-completions request: checks, script, faults, then an answer.

Per request, the answer is decided in this order: auth (401) -> body validation (400) ->
``reject_json_schema``, ``reject_stream``, ``reject_stream_options`` (400) -> ``context_tokens``
(400 context_length_exceeded) -> next queued item -> one RNG draw against
error_rate / timeout_rate / malformed_rate -> responder (not for json_schema in ``generic`` mode) ->
default generator. Validation rejections consume neither the queue nor the RNG, so a client's
fallback request gets the scripted answer and seeded fault sequences do not shift. The answer is
then cut at ``truncate_at_tokens`` (finish_reason "length") and sent whole or, to a request with
``stream: true``, as chunks paced at ``stream_tokens_per_s`` (a whole answer waits as long).

:class:`Answering` is mixed into :class:`~memoryos_workers.testing.fake_llm.server.FakeLLM`, which owns
the knobs and counters declared below; a new knob is read here and set there.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import random
import threading
from collections.abc import Callable
from typing import Any

from memoryos_workers.testing.fake_llm.completions import (
    CHARS_PER_TOKEN,
    completion_body,
    estimate_tokens,
    message_text,
    model_object,
    stream_chunks,
    usage_body,
)
from memoryos_workers.testing.fake_llm.faults import (
    Fault,
    default_error_message,
    error_body,
    format_seconds,
    truncate_json,
)
from memoryos_workers.testing.fake_llm.httpd import Reply, StreamReply
from memoryos_workers.testing.fake_llm.schema_answers import generate_from_schema
from memoryos_workers.testing.fake_llm.schema_random import random_from_schema

log = logging.getLogger(__name__)

#: ``responder(request_body) -> str | dict | list | Fault | None``: a dict/list is serialized as the
#: content, a str used verbatim, a Fault injects that fault, None falls back to the default generator.
Responder = Callable[[dict[str, Any]], Any]


class Answering:
    """The request-handling half of FakeLLM (see the module docstring for the order of decisions)."""

    # Knobs (set by FakeLLM.__init__, read on every request).
    model: str
    port: int
    latency: float
    error_rate: float
    error_status: int
    timeout_rate: float
    hang_seconds: float
    malformed_rate: float
    retry_after: float
    reject_json_schema: bool
    reject_schema_keywords: tuple[str, ...]  # as OpenAI's strict mode refuses keywords outside its subset
    require_auth: bool
    responder: Responder | None
    text_answer: str
    context_tokens: int | None
    stream_tokens_per_s: float | None
    stream_usage: bool
    stall_after_tokens: int | None
    truncate_at_tokens: int | None
    generic: bool
    reject_stream: bool
    reject_stream_options: bool
    ignore_stream: bool
    context_refusal_in_stream: bool
    # State and counters (FakeLLM's, guarded by _lock).
    _lock: threading.Lock
    _rng: random.Random
    _answer_rng: random.Random
    _queue: collections.deque[Any]
    _ids: itertools.count[int]
    _stopping: threading.Event
    _requests: list[dict[str, Any]]
    calls: int
    successes: int
    failures: int
    prompt_tokens: int
    completion_tokens: int
    unauthorized: int
    faults: collections.Counter[str]
    statuses: collections.Counter[int]

    def models_reply(self) -> Reply:
        return Reply(200, {"object": "list", "data": [model_object(self.model)]})

    def model_reply(self, model_id: str) -> Reply:
        if model_id != self.model:
            message = f"The model '{model_id}' does not exist"
            return Reply(404, error_body(404, message, code="model_not_found"))
        return Reply(200, model_object(model_id))

    def _fail(self, status: int, message: str, *, kind: str, param: str | None = None,
              headers: dict[str, str] | None = None) -> Reply:
        """Count a failure and build an OpenAI-style error reply. Caller holds no lock."""
        with self._lock:
            self.failures += 1
            self.faults[kind] += 1
            self.statuses[status] += 1
        return Reply(status, error_body(status, message, param=param), headers)

    def _sleep(self, seconds: float) -> bool:
        """Interruptible sleep; False when the server is stopping (then the request is dropped)."""
        if seconds <= 0:
            return not self._stopping.is_set()
        return not self._stopping.wait(seconds)

    def handle_chat(self, raw: bytes, authorization: str | None) -> Reply | StreamReply | None:
        """Decide and build the answer to one chat-completions request (order: the module docstring)."""
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
        if body.get("stream") and self.reject_stream:
            return self._fail(400, "stream=true is not supported by the fake LLM", kind="bad_request",
                              param="stream")
        if "stream_options" in body and self.reject_stream_options:
            return self._fail(400, "Unrecognized request argument supplied: stream_options", kind="bad_request",
                              param="stream_options")
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
            refused = _refused_keyword(spec.get("schema"), self.reject_schema_keywords)
            if refused is not None:
                where, keyword = refused
                return self._fail(400, f"Invalid schema for response_format '{spec['name']}': In context={where}, "
                                  f"'{keyword}' is not permitted.", kind="json_schema_rejected",
                                  param="response_format")

        refusal = self._context_refusal(body)
        if refusal is not None:
            return refusal

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

    def _context_refusal(self, body: dict[str, Any]) -> Reply | StreamReply | None:
        """OpenAI's 400 for a prompt longer than ``context_tokens`` (by the fake's own count); to a
        streamed request with ``context_refusal_in_stream``, llama-cpp-python's 200 and an empty stream
        (its refusal is raised inside the stream, where the client never sees it)."""
        prompt_tokens = estimate_tokens(message_text(body.get("messages")))
        if self.context_tokens is None or prompt_tokens <= self.context_tokens:
            return None
        if body.get("stream") and self.context_refusal_in_stream:
            with self._lock:
                self.failures += 1
                self.faults["context_length"] += 1
                self.statuses[200] += 1
            return StreamReply([], self._stopping)
        message = (
            f"This model's maximum context length is {self.context_tokens} tokens. However, your messages "
            f"resulted in {prompt_tokens} tokens. Please reduce the length of the messages."
        )
        reply = self._fail(400, message, kind="context_length", param="messages")
        reply.body["error"]["code"] = "context_length_exceeded"
        return reply

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

    def _apply_fault(self, fault: Fault, request: dict[str, Any], fmt_type: str) -> Reply | StreamReply | None:
        if fault.kind == "http":
            headers: dict[str, str] = {}
            retry_after = fault.retry_after
            if retry_after is None and fault.status == 429:
                retry_after = self.retry_after
            if retry_after is not None:
                headers["Retry-After"] = format_seconds(retry_after)
            reply = self._fail(fault.status, fault.message or default_error_message(fault.status),
                               kind=f"http_{fault.status}", headers=headers)
            if fault.body is not None:
                reply.body = fault.body
            return reply
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
                content = truncate_json(valid) if fmt_type != "text" else valid[: max(1, len(valid) // 2)]
            return self._completion(request, content)
        if fault.kind == "text":
            return self._success(request, fault.content or "")
        raise ValueError(f"unknown fault kind {fault.kind!r}")

    def _answer(
        self, request: dict[str, Any], fmt_type: str, *, count: bool = True, allow_fault: bool = True
    ) -> Reply | StreamReply | None:
        """Responder first, default generator as fallback.

        ``allow_fault`` is False for the answer that follows a timeout/delay fault, so a responder
        that always returns a Fault cannot loop forever; its Fault then means "default answer".
        """
        result: Any = None
        if self.responder is not None and not (self.generic and fmt_type == "json_schema"):
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
            if self.generic:
                with self._lock:  # one seeded RNG: the same seed gives the same answers
                    return json.dumps(random_from_schema(schema, self._answer_rng))
            return json.dumps(generate_from_schema(schema))
        if fmt_type == "json_object":
            return "{}"
        return self.text_answer

    def _success(self, request: dict[str, Any], content: str) -> Reply | StreamReply | None:
        with self._lock:
            self.successes += 1
        return self._completion(request, content)

    def _completion(self, request: dict[str, Any], content: str) -> Reply | StreamReply | None:
        """A chat.completion object, or its stream of chunks; tokens are added to the counters when
        the answer is built. ``truncate_at_tokens`` cuts the content there (finish_reason "length")."""
        prompt_tokens = estimate_tokens(message_text(request.get("messages")))
        finish_reason = "stop"
        if self.truncate_at_tokens is not None and estimate_tokens(content) > self.truncate_at_tokens:
            content = content[: self.truncate_at_tokens * CHARS_PER_TOKEN]
            finish_reason = "length"
        completion_tokens = estimate_tokens(content)
        with self._lock:
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            self.statuses[200] += 1
            completion_id = f"chatcmpl-fake{self.port}-{next(self._ids):06d}"
        model = request.get("model") or self.model
        headers = {"x-request-id": completion_id}
        if request.get("stream") and not self.ignore_stream:
            options = request.get("stream_options")
            wants_usage = isinstance(options, dict) and bool(options.get("include_usage")) and self.stream_usage
            rate = self.stream_tokens_per_s
            paced = bool(rate) or self.stall_after_tokens is not None
            usage = usage_body(prompt_tokens, completion_tokens) if wants_usage else None
            return StreamReply(
                stream_chunks(completion_id, model, content, finish_reason, usage, paced=paced),
                self._stopping, interval=1.0 / rate if rate else 0.0, stall_after=self.stall_after_tokens,
                stall_seconds=self.hang_seconds, headers=headers,
            )  # fmt: skip
        if self.stream_tokens_per_s and not self._sleep(completion_tokens / self.stream_tokens_per_s):
            return None  # a whole answer comes once all of it is generated; None: the fake is stopping
        body = completion_body(completion_id, model, content, prompt_tokens, completion_tokens, finish_reason)
        return Reply(200, body, headers)


def _refused_keyword(
    schema: Any, keywords: tuple[str, ...], path: tuple[str, ...] = ()
) -> tuple[tuple[str, ...], str] | None:
    """The first of `keywords` the schema uses, with where (OpenAI's strict mode names the context so)."""
    if not keywords:
        return None
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in keywords:
                return path, key
            found = _refused_keyword(value, keywords, (*path, key))
            if found is not None:
                return found
    elif isinstance(schema, list):
        for i, item in enumerate(schema):
            found = _refused_keyword(item, keywords, (*path, str(i)))
            if found is not None:
                return found
    return None

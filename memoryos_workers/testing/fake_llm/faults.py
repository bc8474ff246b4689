"""How the fake LLM misbehaves: scripted faults and the OpenAI-style error bodies it answers with.

A fault is a value (frozen), so a test can put the same one several times into a script
(:meth:`~memoryos_workers.testing.fake_llm.FakeLLM.queue_responses`) or return it from a responder.
The error bodies copy OpenAI's ``type``/``code`` per status, so the ``openai`` client maps them to
the same exceptions a real provider's errors give.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: Fallback truncated JSON for malformed answers (when truncating the real answer stays valid JSON).
MALFORMED_FALLBACK = '{"topics": ['


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
    body: Any = None

    @classmethod
    def http(
        cls, status: int, message: str | None = None, retry_after: float | None = None, body: Any = None
    ) -> Fault:
        """Answer with HTTP ``status`` and an OpenAI-style error body (or exactly ``body``, to speak
        as another server does: vLLM, llama.cpp, Ollama each shape their errors their own way).

        For 429 a ``Retry-After`` header is always sent (``retry_after`` or the server's
        ``retry_after`` knob) because rate-limit handling in clients keys off it.
        """
        if not 400 <= status <= 599:
            raise ValueError(f"Fault.http needs an error status (400..599), got {status}")
        return cls(kind="http", status=status, message=message, retry_after=retry_after, body=body)

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


def error_body(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    err_type, default_code = _error_type(status)
    return {"error": {"message": message, "type": err_type, "param": param, "code": code or default_code}}


def default_error_message(status: int) -> str:
    if status == 429:
        return "Rate limit reached for requests (fake). Please try again later."
    if status >= 500:
        return f"The server had an error while processing your request (fake HTTP {status})."
    return f"Fake error (HTTP {status})."


def truncate_json(valid: str) -> str:
    """Cut a JSON document in half so it no longer parses (what a cut-off stream looks like)."""
    for cut in (len(valid) // 2, len(valid) - 1, 1):
        candidate = valid[: max(cut, 1)]
        try:
            json.loads(candidate)
        except ValueError:
            return candidate
    return MALFORMED_FALLBACK


def format_seconds(value: float) -> str:
    """A ``Retry-After`` value: whole seconds without a decimal point, as servers send them."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"

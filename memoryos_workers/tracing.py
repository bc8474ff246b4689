"""Tracing in our own processes (worker, beat, `memoryos serve`): the SDK configured from OTEL_* (see
producers.tracing, where the switch and the span helpers live) and the maintained instrumentations:

- Celery: a span per task run, parented by the context the sender put in the task's headers, so a
  publish, the promote task it caused and everything the task does are one trace;
- redis: a span per command or pipeline, its arguments recorded as `?` (never a key or a value);
- FastAPI: a span per HTTP request of the API (health, readiness and metrics routes left out).

Plus what no instrumentation knows: an LLM call as a `gen_ai` client span (model, tokens, purpose) and the
vector store's writes and searches (`vectorstore/traced.py`). All of it off unless OTEL_* asks for it.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from opentelemetry import trace

from producers.tracing import enabled, flush, get_tracer, once, setup_tracing

log = logging.getLogger("memoryos.tracing")

F = TypeVar("F", bound=Callable[..., Any])

_EXCLUDED_URLS = "healthz,readyz,metrics"


def setup(service_name: str) -> bool:
    """The SDK and the Celery and redis instrumentations, once per process; False when tracing is off."""
    if not setup_tracing(service_name):
        return False
    if once("celery"):
        _instrument("opentelemetry.instrumentation.celery", "CeleryInstrumentor")
    if once("redis"):
        _instrument("opentelemetry.instrumentation.redis", "RedisInstrumentor")  # arguments recorded as "?"
    return True


def _instrument(module: str, name: str) -> None:
    """Turns a maintained instrumentation on; one that is not installed is said once and left out."""
    try:
        instrumentor = getattr(importlib.import_module(module), name)
    except ImportError:
        log.error("tracing without %s: install it with: pip install 'memoryos-workers[tracing]'", module)
        return
    instrumentor().instrument()


def install_celery_hooks() -> None:
    """Tracing set up when a worker or beat starts (never at import: a process that only imports the app,
    such as a producer, configures its own)."""
    from celery.signals import beat_init, worker_init, worker_process_init, worker_process_shutdown, worker_shutdown

    def start_worker(**_: Any) -> None:
        setup("memoryos-worker")

    def start_beat(**_: Any) -> None:
        setup("memoryos-beat")

    def stop(**_: Any) -> None:
        flush()  # a prefork child leaves by os._exit: no atexit handler would export its last spans

    worker_init.connect(start_worker, weak=False)
    worker_process_init.connect(start_worker, weak=False)  # prefork children: after the fork
    beat_init.connect(start_beat, weak=False)
    worker_process_shutdown.connect(stop, weak=False)
    worker_shutdown.connect(stop, weak=False)


def instrument_app(app: Any) -> None:
    """The HTTP API's requests as server spans (when tracing is on)."""
    if not setup("memoryos-api"):
        return
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    except ImportError:
        log.error("tracing without the HTTP API's request spans: pip install 'memoryos-workers[tracing]'")
        return
    FastAPIInstrumentor.instrument_app(app, excluded_urls=_EXCLUDED_URLS)


def llm_call(model: Callable[[Any], str]) -> Callable[[F], F]:
    """Decorates LLMClient._complete: one `chat {model}` client span per request sent, with the gen_ai
    attributes (operation, provider, model, token usage, finish reason) and the call's purpose; the
    prompt and the answer are never recorded."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(client: Any, call: Any, usage: Any, **kwargs: Any) -> Any:
            if not enabled():
                return fn(client, call, usage, **kwargs)
            name = model(client)
            attrs = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",  # the OpenAI-compatible API, whoever serves it
                "gen_ai.system": "openai",
                "gen_ai.request.model": name,
                "memoryos.llm.purpose": call.name,
            }
            if call.max_tokens:
                attrs["gen_ai.request.max_tokens"] = call.max_tokens
            before = (usage.prompt_tokens, usage.completion_tokens)
            kind = trace.SpanKind.CLIENT
            with get_tracer().start_as_current_span(f"chat {name}", kind=kind, attributes=attrs) as span:
                try:
                    answer = fn(client, call, usage, **kwargs)
                except Exception as exc:
                    span.set_attribute("error.type", type(exc).__name__)
                    raise
                span.set_attributes({
                    "gen_ai.usage.input_tokens": usage.prompt_tokens - before[0],
                    "gen_ai.usage.output_tokens": usage.completion_tokens - before[1],
                    "gen_ai.response.finish_reasons": [answer.finish_reason or "unknown"],
                    "memoryos.llm.usage_reported": answer.reported,
                })
                return answer

        return inner  # type: ignore[return-value]

    return wrap

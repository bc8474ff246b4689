"""Traces across processes: spans through the OpenTelemetry API, off unless configured.

Producers only use the API (opentelemetry-api, light): with no SDK configured every span here is a no-op
and the decorator below costs one check. A chat backend that configured OpenTelemetry itself gets our spans
in its traces as they are; `setup_tracing` configures the SDK from the standard OTEL_* variables for
processes that have none (our workers, `memoryos serve`, the CLI) and is a no-op unless they ask for it:

- OTEL_TRACES_EXPORTER (`otlp`, `console` or `none`), or an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT,
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), turns tracing on; OTEL_SDK_DISABLED=true keeps it off;
- OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_*, OTEL_EXPORTER_OTLP_*
  (protocol http/protobuf, headers, timeout) are read by the SDK and its exporter as usual.

Context travels with the work: in the Celery task's headers (`task_headers`, read by the maintained Celery
instrumentation on the worker) and in the retrieval lane's request frame. Spans carry ids (user, turn,
batch, task) and counts, never turn text, prompts or keys.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

log = logging.getLogger("memoryos.tracing")

F = TypeVar("F", bound=Callable[..., Any])
MAX_IDS = 32  # ids listed on one span at most (a bulk publish names its first turns)
_setup_lock = threading.Lock()
_setup_done: dict[str, bool] = {}
_own_provider: Any = None  # see use_provider
_tracers: dict[int, tuple[Any, trace.Tracer]] = {}


def use_provider(provider: Any) -> None:
    """Make memoryos's spans in this process go to `provider` instead of the global one (None: the global
    one again): for an application that keeps a provider of its own for memoryos, and for tests."""
    global _own_provider
    _own_provider = provider


def get_tracer() -> trace.Tracer:
    """memoryos's tracer from the provider in use (made once per provider)."""
    provider = _own_provider or trace.get_tracer_provider()
    found = _tracers.get(id(provider))
    if found is None or found[0] is not provider:
        found = _tracers[id(provider)] = (provider, provider.get_tracer("memoryos"))
    return found[1]


def enabled() -> bool:
    """A real tracer provider is installed (ours or the application's): spans are worth making."""
    if _own_provider is not None:
        return True
    return not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def requested() -> bool:
    """The OTEL_* environment asks for traces (see the module docstring)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def setup_tracing(service_name: str) -> bool:
    """Installs the SDK's tracer provider with the exporter OTEL_TRACES_EXPORTER names (OTLP by default) when
    the environment asks for traces and no provider is installed yet; True when spans are now recorded.
    Idempotent; never raises for a bad configuration (it logs what to fix and leaves tracing off)."""
    with _setup_lock:
        if enabled():
            return True
        if not requested():
            return False
        try:
            from opentelemetry.sdk.resources import SERVICE_NAME, Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            log.error("tracing is off: OTEL_* asks for traces but the OpenTelemetry SDK is not installed; "
                      "install it with: pip install 'memoryos-workers[tracing]'")
            return False
        try:
            resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service_name})
            provider = TracerProvider(resource=resource)  # the sampler comes from OTEL_TRACES_SAMPLER
            for name in (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(","):
                provider.add_span_processor(BatchSpanProcessor(_exporter(name.strip().lower())))
        except Exception as exc:  # noqa: BLE001 - tracing must never stop the process it observes
            log.error("tracing is off: %s (check the OTEL_* environment variables)", exc)
            return False
        trace.set_tracer_provider(provider)
        log.info("tracing on: spans of %s exported by %s", resource.attributes.get(SERVICE_NAME),
                 os.environ.get("OTEL_TRACES_EXPORTER") or "otlp")
        return True


def _exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={name!r} is not supported here: use otlp, console or none")
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf").strip().lower()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ValueError("OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs opentelemetry-exporter-otlp-proto-grpc "
                             "installed; or use http/protobuf (port 4318)") from exc
        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPExporter

    return HTTPExporter()


def flush(timeout_ms: int = 5000) -> None:
    """Exports the spans still waiting in the batch processor: for processes that end without running atexit
    handlers (uvicorn re-raises SIGTERM after its graceful shutdown; prefork children leave by os._exit)."""
    provider = _own_provider or trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if callable(force_flush):
        try:
            force_flush(timeout_ms)
        except Exception as exc:  # noqa: BLE001 - a process on its way out must not fail over its spans
            log.warning("could not export the last spans: %s", exc)


def once(name: str) -> bool:
    """True the first time `name` is asked in this process (instrumentations are installed once)."""
    with _setup_lock:
        if _setup_done.get(name):
            return False
        _setup_done[name] = True
        return True


# -- spans -------------------------------------------------------------------------------------------------

def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None}


@contextmanager
def span(name: str, kind: SpanKind = SpanKind.INTERNAL, **attributes: Any) -> Iterator[Any]:
    """A span around a block (a no-op span when tracing is off); exceptions are recorded on it."""
    if not enabled():
        yield trace.INVALID_SPAN
        return
    with get_tracer().start_as_current_span(name, kind=kind, attributes=_clean(attributes)) as current:
        yield current


def traced(name: str, attributes: Callable[..., Mapping[str, Any]] | None = None,
           result: Callable[[Any], Mapping[str, Any]] | None = None,
           kind: SpanKind = SpanKind.INTERNAL) -> Callable[[F], F]:
    """Decorates a function with a span: `attributes(*args, **kwargs)` names its ids, `result(value)` adds
    what came out (counts). With tracing off the function runs as it is, after one check."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            if not enabled():
                return fn(*args, **kwargs)
            attrs = _clean(attributes(*args, **kwargs)) if attributes else {}
            with get_tracer().start_as_current_span(name, kind=kind, attributes=attrs) as current:
                value = fn(*args, **kwargs)
                if result is not None and current.is_recording():
                    current.set_attributes(_clean(result(value)))
                return value

        return inner  # type: ignore[return-value]

    return wrap


def publish_span(turns: Sequence[Any]) -> dict[str, Any]:
    """A publish's span attributes: how many turns, their users and turn ids (the first few), no text."""
    users = list(dict.fromkeys(t.user_id for t in turns))
    return {"memoryos.turns": len(turns), "memoryos.user_id": users[0] if len(users) == 1 else None,
            "memoryos.users": len(users), "memoryos.turn_ids": [t.turn_id for t in turns[:MAX_IDS]]}


# -- context across processes --------------------------------------------------------------------------

def task_headers() -> dict[str, str]:
    """The current trace context as message headers (W3C traceparent): empty when there is none."""
    if not enabled():
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextmanager
def continued(carrier: Mapping[str, str] | None) -> Iterator[None]:
    """Runs a block in the trace context a message carried (the retrieval lane's frames)."""
    if not carrier or not enabled():
        yield
        return
    token = otel_context.attach(propagate.extract(dict(carrier)))
    try:
        yield
    finally:
        otel_context.detach(token)


__all__ = ["SpanKind", "continued", "enabled", "flush", "get_tracer", "publish_span", "requested", "setup_tracing",
           "span", "task_headers", "traced", "use_provider"]

"""The vector store's writes and searches as client spans (when tracing is on): which collection, what
operation, how many points; never a vector, a payload or a filter's values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import trace

from producers.tracing import enabled, get_tracer

from .base import VectorStore

_TRACED = {"upsert", "query", "delete", "delete_ids", "set_payload", "get", "scroll"}


class TracedStore:
    """Delegates everything to the store; the operations in _TRACED run inside a span."""

    def __init__(self, store: VectorStore, system: str) -> None:
        self._store = store
        self._system = system

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in _TRACED or not callable(attr):
            return attr

        def call(collection: str, *args: Any, **kwargs: Any) -> Any:
            attrs: dict[str, Any] = {"db.system.name": self._system, "db.collection.name": collection,
                                     "db.operation.name": name}
            items = args[0] if args and isinstance(args[0], Sequence) and not isinstance(args[0], str) else None
            if items is not None:
                attrs["memoryos.points"] = len(items)
            if "limit" in kwargs and kwargs["limit"] is not None:
                attrs["memoryos.limit"] = kwargs["limit"]
            with get_tracer().start_as_current_span(f"{name} {collection}", kind=trace.SpanKind.CLIENT,
                                              attributes=attrs) as span:
                out = attr(collection, *args, **kwargs)
                if isinstance(out, list):
                    span.set_attribute("memoryos.returned", len(out))
                return out

        return call


def traced(store: VectorStore, system: str) -> VectorStore:
    """The store itself when tracing is off (nothing added on any call), else a TracedStore around it."""
    return TracedStore(store, system) if enabled() else store  # type: ignore[return-value]

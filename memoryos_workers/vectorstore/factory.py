"""Picks the backend from settings, so nothing else in the code base knows which one is running."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import VectorStore
from .traced import traced

if TYPE_CHECKING:
    from schemas.settings import Settings

IN_MEMORY = ":memory:"


def open_store(settings: Settings) -> VectorStore:
    """A server URL means many processes share Qdrant; without one, the embedded Edge store is used.

    ":memory:" selects qdrant-client's in-process mode, which needs neither a server nor a folder (tests).
    Backends are imported lazily so the embedded path never pays for importing qdrant-client.
    """
    if not settings.qdrant_url:
        from .edge import EdgeStore

        return traced(EdgeStore(settings.data_dir / "vectors", settings.key_prefix), "qdrant-edge")
    from qdrant_client import QdrantClient

    from .server import QdrantServerStore

    if settings.qdrant_url == IN_MEMORY:
        return traced(QdrantServerStore(QdrantClient(IN_MEMORY), settings.key_prefix), "qdrant")
    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    store = QdrantServerStore(QdrantClient(url=settings.qdrant_url, api_key=api_key), settings.key_prefix)
    return traced(store, "qdrant")

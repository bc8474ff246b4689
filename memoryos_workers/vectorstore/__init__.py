"""Vector storage behind one small interface: embedded Qdrant Edge by default, a Qdrant server when
MEMORYOS_QDRANT_URL is set. The backends live in `.edge` and `.server`; callers use `open_store`."""

from .base import Hit, ModelMismatchError, PointIn, SparseVector, StoreLockedError, VectorStore, VectorStoreError
from .factory import open_store

__all__ = [
    "Hit",
    "PointIn",
    "SparseVector",
    "ModelMismatchError",
    "StoreLockedError",
    "VectorStore",
    "VectorStoreError",
    "open_store",
]

"""A tier's store creates its vector collections on first use, once, whichever thread comes first (the
embedded store opens a collection's folder when it is created, so `Runtime.warm_up` calls `ensure` at
start-up and a store held by another process is reported then)."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod

from memoryos_workers.embeddings.base import TextEmbedder
from memoryos_workers.vectorstore import VectorStore


class CollectionOwner(ABC):
    def __init__(self, store: VectorStore, embedder: TextEmbedder) -> None:
        self.store = store
        self.embedder = embedder
        self._ready = False
        self._lock = threading.Lock()

    def ensure(self) -> None:
        with self._lock:
            if not self._ready:
                self._create()
                self._ready = True

    @abstractmethod
    def _create(self) -> None:
        """Creates (or opens) this store's collections with their payload indexes."""

"""What the memory tiers ask of an embedder, so they can be given the real model or a stub.

The stores only embed texts and record which model made the vectors: ``dim`` sizes a collection
and ``fingerprint`` is what a collection records to refuse vectors of another model. Anything else
(model folders, batching, caches) is the real embedder's business (:mod:`.embedder`); the
in-process :class:`~memoryos_workers.embeddings.stub.StubEmbedder` offers the same interface
without loading a model, as dramatiq ships ``StubBroker`` beside its real brokers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


class EmbeddingModelError(RuntimeError):
    """The configured embedding model cannot be loaded; the message says what to do."""


@runtime_checkable
class TextEmbedder(Protocol):
    """Unit-length vectors of texts, and the identity of the model that made them."""

    dim: int
    fingerprint: str

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order; raises TypeError for a bare string or a non-string item."""
        ...

    def embed_query(self, text: str) -> list[float]:
        """The vector of one search query."""
        ...

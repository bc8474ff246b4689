"""Moving a store to another embedding model: every stored vector made again from the text it came from.

Collections record the model of their vectors and refuse another (vectorstore.check_model), so changing
MEMORYOS_EMBEDDING_MODEL needs this step. It needs the same dimension (a collection's is fixed; another
one means a new store). While it runs, each collection records "migrating to <model>", so no worker of
either model opens it; an interrupted run leaves that mark, and running again finishes the job (every
point is written again, payload kept, only the vectors and the model field change). Stop the workers
first: a worker still writing would be overwritten or mixed (`memoryos reembed` refuses while any of the
deployment's workers answers a ping).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from memoryos_workers.embeddings.base import TextEmbedder
from memoryos_workers.memory.pages import PAGES, TERMS, page_sparse_text, page_terms, page_vector_text
from memoryos_workers.memory.persona_store import KNOWLEDGE, PROFILES, fact_vector_text, profile_vector_text
from memoryos_workers.memory.segments import SEGMENTS, segment_vector_text
from memoryos_workers.vectorstore import PointIn, VectorStore, VectorStoreError
from memoryos_workers.vectorstore.base import MIGRATING, MODEL_KEY

#: What each collection's vectors are made from, as its writer makes them.
SOURCES: dict[str, Callable[[dict[str, Any]], str]] = {
    PAGES: page_vector_text,
    SEGMENTS: segment_vector_text,
    PROFILES: profile_vector_text,
    KNOWLEDGE: fact_vector_text,
}


class ReembedError(VectorStoreError):
    """The store cannot be moved to this model (another dimension)."""


class _Sparse(Protocol):
    def embed_documents(self, texts: list[str]) -> list[Any]: ...


def reembed(
    store: VectorStore, embedder: TextEmbedder, sparse: _Sparse, progress: Callable[[str, int], None] | None = None
) -> dict[str, int]:
    """Re-embeds every point of every collection; returns how many, by collection."""
    hybrid = _open_all(store, embedder.dim)
    for name in SOURCES:
        store.set_model(name, MIGRATING + embedder.fingerprint)
    done: dict[str, int] = {}
    for name, text_of in SOURCES.items():
        done[name] = 0
        for hits in store.scan(name):
            vectors = embedder.embed([text_of(h.payload) for h in hits])
            sparse_vectors = (
                sparse.embed_documents([page_sparse_text(h.payload) for h in hits])
                if name == PAGES and hybrid else [None] * len(hits)
            )
            store.upsert(name, [
                PointIn(id=h.id, vector=v, payload=_payload(h.payload, embedder.fingerprint, s),
                        sparse=s if s is not None and s.indices else None)
                for h, v, s in zip(hits, vectors, sparse_vectors, strict=True)
            ])
            done[name] += len(hits)
            if progress is not None:
                progress(name, len(hits))
        store.set_model(name, embedder.fingerprint)
    return done


def _payload(payload: dict[str, Any], model: str, sparse: Any) -> dict[str, Any]:
    """The point's payload with the new model, and for a page its BM25 terms (a page stored before pages
    carried them gets them here, as `memoryos bm25-terms` would write them)."""
    out = {**payload, MODEL_KEY: model}
    if sparse is not None:
        out[TERMS] = page_terms(sparse)
    return out


def _open_all(store: VectorStore, dim: int) -> bool:
    """Opens (or creates) every collection without the model check; True if pages carry BM25 vectors."""
    try:
        for name in SOURCES:
            store.ensure_collection(name, dim=dim)
    except VectorStoreError as exc:
        if "dim" not in str(exc):
            raise
        raise ReembedError(
            f"{exc}: the new model's vectors have {dim} dimensions, and a collection's dimension is fixed. "
            "Give the new model its own store (a new MEMORYOS_DATA_DIR, or a new MEMORYOS_KEY_PREFIX on a "
            "Qdrant server) and import the users' turns there (`memoryos export`, then `memoryos import`)"
        ) from exc
    try:
        store.ensure_collection(PAGES, dim=dim, sparse=True)
    except VectorStoreError as exc:
        if "without a sparse vector" not in str(exc):
            raise
        return False
    return True

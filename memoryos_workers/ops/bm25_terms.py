"""Adding the BM25 `terms` payload to pages stored before pages carried it (`memoryos bm25-terms`).

Retrieval ranks a user's pages with that user's own IDF (retrieval/user_idf.py), counted over the pages'
`terms`; a user with a page without them keeps the collection's IDF. This writes each such page's terms
from its text, as PageStore.upsert makes them, and nothing else: the vectors and the rest of the payload
stay. Every write is the value a worker would write for the same page, and a page deleted meanwhile is
skipped (set_payload by id), so it is safe to run twice, to interrupt, and (on a Qdrant server) beside
running workers; the embedded store is held by one process, so there the workers are stopped first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from memoryos_workers.memory.pages import PAGES, TERMS, PageStore, page_sparse_text, page_terms


class _Sparse(Protocol):
    def embed_documents(self, texts: list[str]) -> list[Any]: ...


def add_terms(pages: PageStore, sparse: _Sparse, progress: Callable[[int, int], None] | None = None) -> int:
    """Writes the terms of every page that has none; returns how many. `progress(seen, written)` after
    each page of the scan. Does nothing on a pages collection without BM25 vectors."""
    pages.ensure()  # also adds the terms index to a collection made before it
    if not pages.hybrid:
        return 0
    written = 0
    for hits in pages.store.scan(PAGES):
        missing = [h for h in hits if TERMS not in h.payload]
        vectors = sparse.embed_documents([page_sparse_text(h.payload) for h in missing]) if missing else []
        for hit, vector in zip(missing, vectors, strict=True):
            pages.store.set_payload(PAGES, [hit.id], {TERMS: page_terms(vector)})
        written += len(missing)
        if progress is not None:
            progress(len(hits), len(missing))
    return written

"""Mid-term pages in the vector store: deterministic ids, so re-running a batch changes nothing."""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from memoryos_workers.embeddings.base import TextEmbedder
from memoryos_workers.embeddings.sparse import get_sparse_encoder, occurrences, page_document
from memoryos_workers.memory.collections import CollectionOwner
from memoryos_workers.vectorstore import Hit, PointIn, SparseVector, VectorStore, VectorStoreError
from schemas.turns import SCHEMA_VERSION, Page
from schemas.words import stored_stems

log = logging.getLogger("memoryos.pages")

PAGES = "pages"
TERMS = "terms"  # the page's BM25 term ids (page_terms); pages stored before it have none
NO_TERMS = -1  # the terms of a page whose text is all stopwords (BM25 term ids are never negative)
COMPLETE_USERS = 65_536  # users remembered as having every page with its terms (a few MiB at most)
_NAMESPACE = uuid.UUID("6f1c5b8e-3d2a-4b7c-9e10-4d6a2f8b9c01")


def page_point_id(user_id: str, turn_id: str) -> str:
    """The same turn always maps to the same point, whichever worker stores it and how often."""
    return str(uuid.uuid5(_NAMESPACE, f"page\x1f{user_id}\x1f{turn_id}"))


def page_vector_text(payload: dict[str, Any]) -> str:
    """What a stored page's dense vector was made from (for re-embedding)."""
    return Page.model_validate(payload).text()


def page_sparse_text(payload: dict[str, Any]) -> str:
    return page_document(payload["user_input"], payload["agent_response"])


def page_payload(page: Page, batch_id: str, embedding_model: str, sparse: SparseVector | None = None
                 ) -> dict[str, Any]:
    payload = page.model_dump(mode="json")
    payload.update(
        ts=page.timestamp.timestamp(),
        batch_id=batch_id,
        embedding_model=embedding_model,
        schema_version=SCHEMA_VERSION,
        **stored_stems(page.user_input, page.agent_response),  # read by every retrieval's context fitting
    )
    if sparse is not None:
        payload[TERMS] = page_terms(sparse)
    return payload


def page_terms(sparse: SparseVector) -> list[int]:
    """The page's BM25 terms as an indexed payload field, each as often as the page says it (`occurrences`
    of its sparse vector): counting a user's pages that hold a term gives that user's document frequency,
    and the list gives back the page's BM25 weights, so the BM25 list's payloads are all its rescoring
    reads (retrieval/user_idf.py). The counts follow the store by construction (a deleted or forgotten
    page no longer counts; a replayed write writes the same list). A page without terms (all stopwords)
    holds NO_TERMS, so that every page written since is told apart from one written before."""
    return occurrences(sparse) or [NO_TERMS]


class PageStore(CollectionOwner):
    def __init__(self, store: VectorStore, embedder: TextEmbedder) -> None:
        super().__init__(store, embedder)
        self.sparse = get_sparse_encoder()
        self.hybrid = True  # pages carry BM25 vectors; False only for a collection made before they did
        self._warned_terms = False
        self._complete_users: OrderedDict[str, None] = OrderedDict()  # users whose pages all carry terms
        self._complete_lock = threading.Lock()

    def _create(self) -> None:
        fields = dict(
            dim=self.embedder.dim,
            model=self.embedder.fingerprint,
            tenant_fields=("user_id",),
            keyword_fields=("assistant_id", "turn_id", "batch_id", "segment_id"),
            integer_fields=("seq", TERMS),
            float_fields=("ts",),
        )
        try:
            self.store.ensure_collection(PAGES, sparse=True, **fields)
        except VectorStoreError as exc:
            if "without a sparse vector" not in str(exc):
                raise
            log.warning("the pages collection predates BM25 vectors: page search stays dense only "
                        "until the collection is rebuilt")
            self.store.ensure_collection(PAGES, sparse=False, **fields)
            self.hybrid = False

    def upsert(self, pages: Sequence[Page], batch_id: str) -> None:
        if not pages:
            return
        self.ensure()
        vectors = self.embedder.embed([page.text() for page in pages])
        sparse = (
            self.sparse.embed_documents([page_document(p.user_input, p.agent_response) for p in pages])
            if self.hybrid else [None] * len(pages)
        )
        points = [
            PointIn(
                id=page_point_id(page.user_id, page.turn_id),
                vector=vector,
                payload=page_payload(page, batch_id, self.embedder.fingerprint, sparse_vector),
                sparse=sparse_vector if sparse_vector is not None and sparse_vector.indices else None,
            )
            for page, vector, sparse_vector in zip(pages, vectors, sparse, strict=True)
        ]
        self.store.upsert(PAGES, points)

    def all_for_user(self, user_id: str) -> list[Hit]:
        """Every stored page of a user, in publish order."""
        self.ensure()
        return self.store.scroll(PAGES, filter={"user_id": user_id}, order_by="seq")

    def since(self, user_id: str, seq: int) -> list[Hit]:
        """The user's stored pages from sequence number `seq` on, in publish order (the newest ones
        without reading them all)."""
        self.ensure()
        return self.store.scroll(PAGES, filter={"user_id": user_id, "seq": {"gte": seq}}, order_by="seq")

    def search(self, user_id: str, query: str, limit: int = 10) -> list[Hit]:
        """Plain dense search over a user's pages (the retrieval issue builds the full two-stage search)."""
        self.ensure()
        vector = self.embedder.embed_query(query)
        return self.store.query(PAGES, vector=vector, filter={"user_id": user_id}, limit=limit)

    def count(self, user_id: str) -> int:
        self.ensure()
        return self.store.count(PAGES, filter={"user_id": user_id})

    def get(self, user_id: str, turn_ids: Sequence[str]) -> list[Hit]:
        """Stored pages by turn id (absent ones are left out)."""
        self.ensure()
        return self.store.get(PAGES, [page_point_id(user_id, t) for t in turn_ids])

    def query(self, user_id: str, limit: int, *, vector: Sequence[float] | None = None, sparse: Any = None,
              where: dict[str, Any] | None = None, with_payload: bool = True) -> list[Hit]:
        """A search within one user's pages; `where` narrows it (segment ids, a time range). Without payload,
        hits are point ids and scores only (read the kept ones with `by_ids`)."""
        self.ensure()
        return self.store.query(PAGES, vector=vector, sparse=sparse, filter={**(where or {}), "user_id": user_id},
                                limit=limit, with_payload=with_payload)

    def term_counts(self, user_id: str, terms: Sequence[int]) -> tuple[int, dict[int, int]] | None:
        """The user's page count and, for each term, how many of the user's pages hold it; None when some
        of the user's pages carry no terms (stored before they did: `memoryos bm25-terms` adds them), so
        that a partial count never passes for the user's own. One count per term: each is an indexed
        lookup within the user's pages (about 30 microseconds on the embedded store at 100k pages). Pages
        are written with their terms, so a user found complete once is not checked again by this process
        (a page written meanwhile by a worker of an older version would count in N only)."""
        self.ensure()
        pages = self.store.count(PAGES, filter={"user_id": user_id})
        if not pages or not self._complete(user_id, pages):
            return None
        return pages, {t: self.store.count(PAGES, filter={"user_id": user_id, TERMS: t}) for t in terms}

    def _complete(self, user_id: str, pages: int) -> bool:
        """Whether every page of the user carries its terms (remembered for the last COMPLETE_USERS)."""
        with self._complete_lock:
            if user_id in self._complete_users:
                self._complete_users.move_to_end(user_id)
                return True
        if self.store.count(PAGES, filter={"user_id": user_id, TERMS: {"gte": NO_TERMS}}) < pages:
            if not self._warned_terms:
                self._warned_terms = True
                log.warning("pages stored before they carried their BM25 terms: their users' page search "
                            "weighs words by the whole store until `memoryos bm25-terms` has run")
            return False
        with self._complete_lock:
            self._complete_users[user_id] = None
            while len(self._complete_users) > COMPLETE_USERS:
                self._complete_users.popitem(last=False)
        return True

    def by_ids(self, point_ids: Sequence[str]) -> list[Hit]:
        """Stored pages by point id, with their payloads (absent ones are left out)."""
        self.ensure()
        return self.store.get(PAGES, point_ids)

    def query_seqs(self, user_id: str, seqs: Sequence[int], where: dict[str, Any] | None = None) -> list[Hit]:
        """The user's stored pages with these sequence numbers (and matching `where`)."""
        wanted = sorted({s for s in seqs if s > 0})
        if not wanted:
            return []
        self.ensure()
        flt = {**(where or {}), "user_id": user_id, "seq": wanted}
        return self.store.scroll(PAGES, filter=flt, limit=len(wanted))

    def pending_persona(self, user_id: str, segment_ids: Sequence[str]) -> list[Hit]:
        """Pages of these segments the persona has not read yet, in publish order."""
        self.ensure()
        flt = {"user_id": user_id, "segment_id": list(segment_ids), "persona": "pending"}
        return self.store.scroll(PAGES, filter=flt, order_by="seq")

    # -- annotations written after the pages are stored ----------------------------------------------
    def annotate(self, user_id: str, turn_id: str, fields: dict[str, Any]) -> None:
        """Segment, chain and persona fields on one page (absolute values: a replay writes the same)."""
        self.store.set_payload(PAGES, [page_point_id(user_id, turn_id)], fields)

    def mark_persona(self, user_id: str, turn_ids: Sequence[str], state: str) -> None:
        """Where a page stands for the persona: pending, done or dead."""
        for turn_id in turn_ids:
            self.annotate(user_id, turn_id, {"persona": state})

    # -- deleting ----------------------------------------------------------------------------------
    def delete_in_segments(self, user_id: str, segment_ids: Sequence[str]) -> None:
        self.ensure()
        for sid in segment_ids:
            self.store.delete(PAGES, filter={"user_id": user_id, "segment_id": sid})

    def delete_user(self, user_id: str) -> int:
        self.ensure()
        return self.store.delete(PAGES, filter={"user_id": user_id})

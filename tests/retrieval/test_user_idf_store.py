"""BM25 with the user's own IDF on the real stores (embedded Qdrant Edge and qdrant-client's local mode)
with the real encoders: the ranking follows the user's own pages, a user whose pages predate their terms
keeps the collection's IDF until `memoryos bm25-terms` adds them, and deletes leave no stale counts."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from memoryos_workers.embeddings.embedder import get_embedder
from memoryos_workers.embeddings.sparse import get_sparse_encoder, page_document
from memoryos_workers.memory.pages import PAGES, TERMS, PageStore, page_payload, page_point_id
from memoryos_workers.ops.bm25_terms import add_terms
from memoryos_workers.retrieval.user_idf import user_bm25 as _user_bm25
from memoryos_workers.retrieval.user_idf import user_weights
from memoryos_workers.vectorstore import Hit, PointIn, SparseVector
from memoryos_workers.vectorstore.edge import EdgeStore
from memoryos_workers.vectorstore.server import QdrantServerStore
from schemas.settings import Settings
from schemas.turns import Page

T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
QUERY = "pizza or guitar?"


@pytest.fixture(params=["edge", "server"])
def pages(request: pytest.FixtureRequest, tmp_path: Path, settings: Settings) -> Iterator[PageStore]:
    store = EdgeStore(tmp_path / "edge", "t") if request.param == "edge" else QdrantServerStore(
        QdrantClient(":memory:"), "t")
    yield PageStore(store, get_embedder(settings))
    store.close()


def page(user: str, n: int, text: str) -> Page:
    return Page(seq=n + 1, user_id=user, turn_id=f"{user}-{n}", user_input=text, agent_response="I see.",
                timestamp=T0 + timedelta(hours=n))


def pizza_lover(user: str = "a") -> list[Page]:
    """Pizza is this user's everyday word, guitar a rare one."""
    texts = [f"We had pizza for dinner again, round {i}." for i in range(6)]
    texts += ["I practised guitar for an hour today.", "The weather was mild.", "Work ran late.", "I slept well."]
    return [page(user, i, t) for i, t in enumerate(texts)]


def guitarist(user: str = "b", n: int = 20) -> list[Page]:
    """Guitar is this user's everyday word (so across the store guitar is common, pizza rare)."""
    return [page(user, i, f"My guitar teacher showed me a new chord, lesson {i}.") for i in range(n)]


def user_bm25(pages: PageStore, user: str, query: SparseVector, depth: int) -> list[Hit]:
    """The BM25 list read_early builds: the user's weights (None without terms), then the list."""
    return _user_bm25(pages, user, query, {}, depth, user_weights(pages, user, query))


def terms(text: str) -> list[int]:
    query = get_sparse_encoder().embed_query(text)
    assert query is not None
    return query.indices


def test_the_ranking_follows_the_users_own_pages(pages: PageStore) -> None:
    pages.upsert(pizza_lover("a") + [page("a2", 0, "Just one pizza slice."), page("a2", 1, "Guitar again.")],
                 "b1")
    pages.upsert(guitarist("b"), "b2")
    query = get_sparse_encoder().embed_query(QUERY)
    collection = pages.query("a", 3, sparse=query)
    assert collection[0].payload["user_input"].startswith("We had pizza")  # the store's IDF: guitar is common
    ours = user_bm25(pages, "a", query, depth=10)
    assert ours[0].payload["turn_id"] == "a-6"  # the user's: guitar is rare among a's own pages
    assert ours[0].payload["user_input"] == "I practised guitar for an hour today."
    assert {h.payload["user_id"] for h in ours} == {"a"} and len(ours) == 7  # the 7 pages with either word
    pizza, guitar = terms("pizza")[0], terms("guitar")[0]
    assert pages.term_counts("a", [pizza, guitar]) == (10, {pizza: 6, guitar: 1})
    assert pages.term_counts("b", [pizza, guitar]) == (20, {pizza: 0, guitar: 20})


def test_pages_from_before_terms_keep_the_collection_idf_until_they_are_added(
    pages: PageStore, caplog: pytest.LogCaptureFixture
) -> None:
    pages.upsert(guitarist("b"), "b2")
    old = pizza_lover("c")
    vectors = pages.embedder.embed([p.text() for p in old])
    sparse = pages.sparse.embed_documents([page_document(p.user_input, p.agent_response) for p in old])
    pages.ensure()
    pages.store.upsert(PAGES, [  # as PageStore.upsert wrote them before pages carried their terms
        PointIn(id=page_point_id(p.user_id, p.turn_id), vector=v, payload=page_payload(p, "b0", "m"), sparse=s)
        for p, v, s in zip(old, vectors, sparse, strict=True)])
    pages.upsert([page("c", 10, "A newer page about guitar strings.")], "b3")  # one written since
    query = get_sparse_encoder().embed_query(QUERY)
    with caplog.at_level(logging.WARNING, logger="memoryos.pages"):
        assert pages.term_counts("c", query.indices) is None  # some of c's pages have no terms: no partial count
    assert "`memoryos bm25-terms`" in caplog.text  # the operator is told what to run
    before = user_bm25(pages, "c", query, depth=11)
    # The store's own list (collection IDF), pages tied in score in point id order (user_idf.TIE_MARGIN)
    stores = sorted(pages.query("c", 11, sparse=query), key=lambda h: (-h.score, h.id))
    assert [h.id for h in before] == [h.id for h in stores]
    assert before[0].payload["user_input"].startswith("We had pizza")
    assert add_terms(pages, get_sparse_encoder()) == len(old)
    assert add_terms(pages, get_sparse_encoder()) == 0  # nothing left to add
    assert all(TERMS in h.payload for h in pages.all_for_user("c"))
    after = user_bm25(pages, "c", query, depth=11)
    assert after[0].payload["turn_id"] in ("c-6", "c-10")  # guitar: 2 of c's 11 pages; pizza 6


def test_deleting_and_forgetting_leave_no_stale_counts(pages: PageStore) -> None:
    pages.upsert(pizza_lover("a") + guitarist("b"), "b1")
    pizza, guitar = terms("pizza")[0], terms("guitar")[0]
    for n in range(3):
        pages.annotate("a", f"a-{n}", {"segment_id": "old"})
    pages.delete_in_segments("a", ["old"])  # eviction of a segment
    assert pages.term_counts("a", [pizza, guitar]) == (7, {pizza: 3, guitar: 1})
    pages.delete_user("a")  # forget
    assert pages.term_counts("a", [pizza, guitar]) is None
    assert user_bm25(pages, "a", get_sparse_encoder().embed_query(QUERY), depth=10) == []
    pages.upsert(guitarist("a", n=4) + [page("a", 50, "Pizza, once.")], "b2")  # a new life
    assert pages.term_counts("a", [pizza, guitar]) == (5, {pizza: 1, guitar: 4})
    assert pages.term_counts("b", [pizza, guitar]) == (20, {pizza: 0, guitar: 20})

"""BM25 with the user's own IDF (retrieval/user_idf.py), the pure part: the formula, the weights and the
rescoring of a store's list, over schema objects and a stand-in page store (no services)."""

from __future__ import annotations

import math
from typing import Any

from bench.baselines import bm25_order
from memoryos_workers.retrieval.user_idf import idf, rescore, term_weights, user_bm25, user_weights
from memoryos_workers.vectorstore import Hit, SparseVector

COMMON, RARE = 11, 22


def hit(key: str, terms: dict[int, float] | None, score: float = 1.0) -> Hit:
    sparse = SparseVector(list(terms), list(terms.values())) if terms is not None else None
    return Hit(id=key, score=score, payload={}, sparse=sparse)


def test_idf_is_the_stock_bm25_formula() -> None:
    assert math.isclose(idf(10, 1), math.log(1 + 9.5 / 1.5))
    assert idf(10, 1) > idf(10, 5) > idf(10, 10) > 0  # rarer weighs more, a term in every page still counts
    # the stock baseline ranks a page with the rare word above one with the common word, as the weights do
    texts = ["pizza night", "pizza again", "pizza lunch", "guitar lesson"]
    assert bm25_order(texts, "pizza guitar")[0] == 3


def test_term_weights_follow_the_users_counts_and_the_query_values() -> None:
    query = SparseVector([COMMON, RARE], [1.0, 2.0])
    weights = term_weights(query, 10, {COMMON: 8, RARE: 1})
    assert math.isclose(weights[COMMON], idf(10, 8))
    assert math.isclose(weights[RARE], 2.0 * idf(10, 1))
    assert term_weights(SparseVector([RARE], [1.0]), 10, {})[RARE] == idf(10, 0)  # a word the user never used


def test_rescore_ranks_by_the_users_weights_and_keeps_the_store_order_on_ties() -> None:
    weights = {COMMON: 0.2, RARE: 2.0}
    hits = [hit("common", {COMMON: 1.5}, 9.0), hit("rare", {RARE: 1.0}, 5.0), hit("tie-a", {COMMON: 1.0}, 4.0),
            hit("tie-b", {COMMON: 1.0}, 3.0), hit("other", {99: 1.0}, 2.0), hit("no-vector", None, 1.0)]
    ranked = rescore(hits, weights)
    assert [h.id for h in ranked] == ["rare", "common", "tie-a", "tie-b"]  # no shared term: left out
    assert math.isclose(ranked[0].score, 2.0) and math.isclose(ranked[1].score, 0.3)
    assert all(h.sparse is None for h in ranked)


class StandIn:
    """The PageStore calls user_bm25 makes, recorded."""

    def __init__(self, counts: tuple[int, dict[int, int]] | None, found: list[Hit]) -> None:
        self.counts, self.found, self.calls = counts, found, []

    def term_counts(self, user_id: str, terms: list[int]) -> tuple[int, dict[int, int]] | None:
        return self.counts

    def query(self, user_id: str, limit: int, **kw: Any) -> list[Hit]:
        self.calls.append((limit, kw))
        found = self.found[:limit]
        return found if kw.get("with_sparse") else [Hit(id=h.id, score=h.score, payload=h.payload) for h in found]


def test_user_bm25_ranks_the_stores_list_again_with_the_users_weights() -> None:
    found = [hit("common", {COMMON: 1.0}, 9.0), hit("rare", {RARE: 1.0}, 7.0),
             hit("both", {COMMON: 1.0, RARE: 1.0}, 6.0), hit("beyond", {RARE: 3.0}, 5.0)]
    found = [Hit(id=h.id, score=h.score, payload={"turn_id": h.id}, sparse=h.sparse) for h in found]
    pages = StandIn((10, {COMMON: 9, RARE: 2}), found)
    query = SparseVector([COMMON, RARE], [1.0, 1.0])
    weights = user_weights(pages, "u", query)
    assert weights == term_weights(query, 10, {COMMON: 9, RARE: 2})
    out = user_bm25(pages, "u", query, {"ts": {"gte": 0}}, depth=3, weights=weights)
    assert pages.calls == [(3, {"sparse": query, "where": {"ts": {"gte": 0}}, "with_payload": True,
                                "with_sparse": True})]  # one read, as deep as the list it returns
    assert [h.id for h in out] == ["both", "rare", "common"]  # the store's 3, the user's order
    assert out[0].payload == {"turn_id": "both"} and out[0].score > out[1].score > out[2].score


def test_user_bm25_keeps_the_collection_idf_for_a_user_without_terms() -> None:
    found = [hit("a", {COMMON: 1.0}, 9.0), hit("b", {RARE: 1.0}, 7.0)]
    pages = StandIn(None, found)
    query = SparseVector([COMMON, RARE], [1.0, 1.0])
    assert user_weights(pages, "u", query) is None
    out = user_bm25(pages, "u", query, {}, depth=5, weights=None)
    assert [(h.id, h.score, h.sparse) for h in out] == [("a", 9.0, None), ("b", 7.0, None)]
    assert pages.calls == [(5, {"sparse": query, "where": {}, "with_payload": True, "with_sparse": False})]


def test_recent_turns_are_scored_with_the_users_weights_when_given() -> None:
    """The turns Redis holds compete by their words with the same weights as the stored pages."""
    from datetime import datetime, timezone

    from memoryos_workers.embeddings.sparse import get_sparse_encoder
    from memoryos_workers.retrieval.early import by_words
    from schemas.turns import Page

    enc = get_sparse_encoder()
    at = datetime(2024, 3, 1, tzinfo=timezone.utc)
    turns = [Page(seq=i + 1, user_id="u", turn_id=f"t{i}", user_input=text, agent_response="Nice.", timestamp=at)
             for i, text in enumerate(["Pizza for dinner.", "Guitar practice."])]
    query = enc.embed_query("pizza guitar")
    assert query is not None
    pizza, guitar = (enc.embed_query(w).indices[0] for w in ("pizza", "guitar"))  # type: ignore[union-attr]
    plain = by_words("u", turns, query, enc)
    assert math.isclose(plain[0].score, plain[1].score)  # no IDF: the two words weigh alike
    weighted = by_words("u", turns, query, enc, term_weights(query, 10, {pizza: 8, guitar: 1}))
    assert [h.payload["turn_id"] for h in weighted] == ["t1", "t0"]  # guitar is the user's rare word

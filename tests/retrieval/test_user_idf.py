"""BM25 with the user's own IDF (retrieval/user_idf.py), the pure part: the formula, the weights and the
rescoring of a store's list, over schema objects and a stand-in page store (no services)."""

from __future__ import annotations

import math
from typing import Any

from bench.baselines import bm25_order
from memoryos_workers.embeddings.sparse import get_sparse_encoder, occurrences, tf_weight
from memoryos_workers.memory.pages import NO_TERMS, page_terms
from memoryos_workers.retrieval.user_idf import (
    TIE_MARGIN,
    idf,
    rescore,
    score,
    term_weights,
    user_bm25,
    user_weights,
)
from memoryos_workers.vectorstore import Hit, SparseVector

COMMON, RARE = 11, 22


def hit(key: str, terms: list[int] | None, score: float = 1.0) -> Hit:
    """A stored page as the BM25 search returns it: `terms` lists each term as often as the page says it."""
    return Hit(id=key, score=score, payload={"turn_id": key, **({"terms": terms} if terms is not None else {})})


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


def test_occurrences_give_back_the_encoders_weights() -> None:
    """A page's `terms` (each term as often as it is said) hold its BM25 vector: the weights rescoring
    reads from them are the stored values, tf and length included."""
    enc = get_sparse_encoder()
    for text in ("the cat and the dog and the cat sat on a mat with the cat cat dog", "ha ha ha",
                 "I went hiking with my sister Ana last weekend; hiking is great.\nThat sounds lovely!"):
        vector = enc.embed_documents([text])[0]
        terms = occurrences(vector)
        assert sorted(set(terms)) == sorted(vector.indices)
        for t, value in zip(vector.indices, vector.values, strict=True):
            assert math.isclose(tf_weight(terms.count(t), len(terms)), value, rel_tol=1e-5)
            assert math.isclose(score(terms, {t: 1.0}), value, rel_tol=1e-5)
    assert occurrences(enc.embed_documents(["the cat cat cat"])[0]).count(
        enc.embed_documents(["cat"])[0].indices[0]) == 3
    assert page_terms(SparseVector([], [])) == [NO_TERMS]  # all stopwords: told apart from no field at all


def test_rescore_ranks_by_the_users_weights_and_breaks_ties_by_point_id() -> None:
    weights = {COMMON: 0.2, RARE: 2.0}
    hits = [hit("common", [COMMON, COMMON, 5], 9.0), hit("rare", [RARE, 5, 6], 5.0), hit("tie-b", [COMMON, 7, 8], 4.0),
            hit("tie-a", [COMMON, 8, 9], 3.0), hit("other", [99], 2.0), hit("no-terms", None, 1.0)]
    ranked = rescore(hits, weights)
    assert [h.id for h in ranked] == ["rare", "common", "tie-a", "tie-b"]  # no shared term, no terms: out
    # The store's order of equal scores is its layout's, which another ingestion of the same pages changes.
    assert [h.id for h in rescore(list(reversed(hits)), weights)] == ["rare", "common", "tie-a", "tie-b"]
    assert math.isclose(ranked[0].score, 2.0 * tf_weight(1, 3))
    assert math.isclose(ranked[1].score, 0.2 * tf_weight(2, 3))
    assert ranked[0].payload == {"turn_id": "rare", "terms": [RARE, 5, 6]}


class StandIn:
    """The PageStore calls user_bm25 makes, recorded."""

    def __init__(self, counts: tuple[int, dict[int, int]] | None, found: list[Hit]) -> None:
        self.counts, self.found, self.calls = counts, found, []

    def term_counts(self, user_id: str, terms: list[int]) -> tuple[int, dict[int, int]] | None:
        return self.counts

    def query(self, user_id: str, limit: int, **kw: Any) -> list[Hit]:
        self.calls.append((limit, kw))
        return self.found[:limit]


def test_user_bm25_ranks_the_stores_list_again_with_the_users_weights() -> None:
    found = [hit("common", [COMMON], 9.0), hit("rare", [RARE], 7.0), hit("both", [COMMON, RARE], 6.0),
             hit("beyond", [RARE, RARE, RARE], 5.0)]
    pages = StandIn((10, {COMMON: 9, RARE: 2}), found)
    query = SparseVector([COMMON, RARE], [1.0, 1.0])
    weights = user_weights(pages, "u", query)
    assert weights == term_weights(query, 10, {COMMON: 9, RARE: 2})
    out = user_bm25(pages, "u", query, {"ts": {"gte": 0}}, depth=3, weights=weights)
    assert pages.calls == [(3 + TIE_MARGIN, {"sparse": query, "where": {"ts": {"gte": 0}}, "with_payload": True})]
    assert [h.id for h in out] == ["both", "rare", "common"]  # the store's 3 (one read), the user's order
    assert out[0].score > out[1].score > out[2].score > 0


def test_user_bm25_keeps_the_collection_idf_for_a_user_without_terms() -> None:
    found = [hit("a", None, 9.0), hit("b", None, 7.0)]
    pages = StandIn(None, found)
    query = SparseVector([COMMON, RARE], [1.0, 1.0])
    assert user_weights(pages, "u", query) is None
    out = user_bm25(pages, "u", query, {}, depth=5, weights=None)
    assert [(h.id, h.score) for h in out] == [("a", 9.0), ("b", 7.0)]
    assert pages.calls == [(5 + TIE_MARGIN, {"sparse": query, "where": {}, "with_payload": True})]


def test_user_bm25_cuts_pages_tied_at_its_depth_by_point_id() -> None:
    """Which of the pages tied with the last one kept the store returns follows its layout: the store is asked
    for more, and the cut among the tied is by point id, as the next ingestion of the same pages will cut."""
    tied = [hit(name, None, 5.0) for name in ("t-c", "t-a", "t-b")]
    pages = StandIn(None, [hit("top", None, 9.0), *tied, hit("low", None, 1.0)])
    query = SparseVector([COMMON], [1.0])
    assert [h.id for h in user_bm25(pages, "u", query, {}, depth=3, weights=None)] == ["top", "t-a", "t-b"]
    pages.found = [pages.found[0], *reversed(tied), pages.found[-1]]
    assert [h.id for h in user_bm25(pages, "u", query, {}, depth=3, weights=None)] == ["top", "t-a", "t-b"]


def test_recent_turns_are_scored_with_the_users_weights_when_given() -> None:
    """The turns Redis holds compete by their words with the same weights as the stored pages."""
    from datetime import datetime, timezone

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

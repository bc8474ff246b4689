"""Weighted RRF on its own: what decides the order when lists hold equal scores or a page twice. Pure
arithmetic, so no services: the end-to-end case is test_time_and_filters (the same words on two days)."""

from __future__ import annotations

import pytest

from memoryos_workers.retrieval.fusion import RankFusion
from memoryos_workers.vectorstore import Hit


def _hits(*pairs: tuple[str, float]) -> list[Hit]:
    return [Hit(id=t, score=s, payload={"turn_id": t}) for t, s in pairs]


@pytest.mark.parametrize("store_order", [("a", "b"), ("b", "a")])
def test_equal_scores_share_a_rank_so_the_stores_order_among_equals_decides_nothing(store_order) -> None:  # noqa: ANN001
    fusion = RankFusion(2.0)
    fusion.add("dense", _hits(*((t, 0.44) for t in store_order), ("c", 0.1)), 1.0, set())
    fusion.add("date", _hits(("a", 0.44)), 1.0, set())  # only "a" is in the window the question names
    assert fusion.scores["a"] == pytest.approx(1 / 3 + 1 / 3)
    assert fusion.scores["b"] == pytest.approx(1 / 3)
    assert fusion.scores["c"] == pytest.approx(1 / 5)  # after two equals, rank 3 (1, 1, 3)
    assert [t for t, _ in fusion.top(3)] == ["a", "b", "c"]


def test_a_page_counts_once_per_list_at_its_best_rank_and_unscored_lists_rank_by_order() -> None:
    fusion = RankFusion(2.0)
    # Neighbour hits carry no score: their order is the rank, and a page next to two strong hits counts once.
    fusion.add("neighbour", _hits(("b", 0.0), ("a", 0.0), ("c", 0.0), ("b", 0.0)), 1.0, set(), scored=False)
    assert fusion.scores == pytest.approx({"b": 1 / 3, "a": 1 / 4, "c": 1 / 5})
    assert fusion.found_by["b"] == ["neighbour"]


def test_cut_keeps_every_page_tied_with_the_last_one_kept() -> None:
    """Ties at the cut are all handed over, so the retriever can break them by turn id, not point id."""
    fusion = RankFusion(2.0)
    fusion.add("a", [Hit(id=t, score=s, payload={}) for t, s in [("p1", 0.9), ("p2", 0.8), ("p3", 0.8)]], 1.0, set())
    fusion.add("b", [Hit(id=t, score=s, payload={}) for t, s in [("p4", 0.9)]], 1.0, set())
    assert fusion.cut(1) == ["p1", "p4"] or fusion.cut(1) == ["p4", "p1"]  # both at rank 1 of a list
    assert set(fusion.cut(3)) == {"p1", "p4", "p2", "p3"}  # p2 and p3 share rank 2
    assert set(fusion.cut(10)) == {"p1", "p2", "p3", "p4"} and fusion.cut(0) == []

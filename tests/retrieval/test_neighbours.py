"""Neighbour pages read in two parts (the early thread's guess, then what it missed) find what one read
finds. No services: a fake page store that records each read."""

from __future__ import annotations

from typing import Any

from memoryos_workers.retrieval.neighbours import Near, around, by_seq, prefetch
from memoryos_workers.vectorstore import Hit


class _Pages:
    """Pages 1..20 of one user; seq 7 is filtered out by the `where` the test passes."""

    def __init__(self) -> None:
        self.reads: list[list[int]] = []

    def query_seqs(self, user_id: str, seqs: list[int], where: dict[str, Any] | None = None) -> list[Hit]:
        self.reads.append(list(seqs))
        hidden = 7 if where else None
        return [Hit(id=f"p{s}", score=0.0, payload={"seq": s}) for s in seqs if 1 <= s <= 20 and s != hidden]


def _hit(seq: int) -> Hit:
    return Hit(id=f"p{seq}", score=1.0, payload={"seq": seq})


def test_around_takes_the_numbers_either_side_of_pages_with_one() -> None:
    assert around([_hit(3), Hit(id="x", score=0.0, payload={}), _hit(1)]) == [2, 4, 0, 2]


def test_only_the_numbers_not_asked_early_are_read_and_the_pages_are_those_one_read_finds() -> None:
    pages = _Pages()
    where = {"assistant_id": "a"}
    early = prefetch(pages, "u", [_hit(5), _hit(10), _hit(12)], where, n=2)  # neighbours of 5 and 10 only
    assert pages.reads == [[4, 6, 9, 11]]
    late = by_seq(pages, "u", around([_hit(5), _hit(8), _hit(12)]), where, early)
    assert pages.reads[-1] == [7, 13]  # 4, 6, 9 were asked early; 7 is asked (and filtered out), 13 read
    whole = by_seq(_Pages(), "u", [4, 6, 7, 9, 11, 13], where, Near())
    assert late.found.keys() == whole.found.keys() == {4, 6, 9, 11, 13}


def test_nothing_is_read_when_the_early_thread_asked_for_every_number() -> None:
    pages = _Pages()
    early = prefetch(pages, "u", [_hit(5)], {})
    assert by_seq(pages, "u", [4, 6, 0], {}, early) is early
    assert len(pages.reads) == 1

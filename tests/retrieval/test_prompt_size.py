"""The fitting's top-up sizes each page it tries by the memory section alone (producers/context/prompt_size.py):
that size must be the full render's, or a topped-up prompt could exceed its budget or leave room unused."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from producers.context import RetrievedPage
from producers.context.parts import Parts
from producers.context.prompt_size import PromptSize
from producers.context.render import UNTIMED_NOTE, render
from schemas.tokens import estimate_tokens
from schemas.turns import Page

T0 = datetime(2023, 5, 8, 13, 56, tzinfo=timezone.utc)


def _pages(n: int) -> list[RetrievedPage]:
    """Pages in sessions of three (same time), some in segments with a summary, some with a chain overview."""
    return [RetrievedPage(turn_id=f"t{i}", user_input=f"Page {i}: " + "we talked about the lake " * (i % 4 + 1),
                          agent_response="Nice.", timestamp=T0 + timedelta(days=i // 3), score=1.0 / (1 + i), seq=i,
                          segment_id=f"s{i % 5}" if i % 2 else None,
                          segment_summary=f"Summary of segment {i % 5}." if i % 4 == 1 else "",
                          chain_summary="A chain about the lake." if i % 7 == 3 else "")
            for i in range(n)]


def _recent(same_time: bool) -> list[Page]:
    return [Page(seq=100 + i, user_id="u1", turn_id=f"r{i}", user_input=f"Recent {i}", agent_response="Ok.",
                 timestamp=T0 + timedelta(days=40, minutes=0 if same_time else i)) for i in range(4)]


@pytest.mark.parametrize("recent_same_time", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_the_size_is_the_renders(recent_same_time: bool, seed: int) -> None:
    rng = random.Random(seed)
    pages = _pages(24)
    base = Parts(query="What about the lake?", short_term=_recent(recent_same_time),
                 pages=[p for p in pages if rng.random() < 0.3])
    size = PromptSize(base, len(render(base)))
    for _ in range(30):
        others = [p for p in pages if rng.random() < rng.choice((0.0, 0.1, 0.5, 1.0))]
        assert size.tokens(others) == estimate_tokens(render(replace(base, pages=others)))


def test_the_notice_follows_the_pages() -> None:
    """A page listed without its time brings the note; the size counts it (and drops it when none is)."""
    pages = _pages(3)  # one session: the second and third are listed without the time
    base = Parts(query="q", short_term=_recent(False), pages=pages[:1])
    size = PromptSize(base, len(render(base)))
    assert UNTIMED_NOTE not in render(base)
    with_note = replace(base, pages=pages)
    assert UNTIMED_NOTE in render(with_note)
    assert size.tokens(pages) == estimate_tokens(render(with_note))
    assert size.tokens([]) == estimate_tokens(render(replace(base, pages=[])))

"""The persona call's plan: pages first, the shown facts in the room the pages leave. Showing facts must never
make a call read fewer pages (that left pages over for one more call: conv-26 took 5 persona calls instead of
4), and the facts still get their share when the pages are few."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest

from memoryos_workers.llm.stub import StubLLM
from schemas.persona import Fact
from schemas.turns import Page

pytestmark = pytest.mark.integration


def _pages(user_id: str, n: int) -> list[Page]:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return [Page(seq=i, user_id=user_id, turn_id=f"t{i}", user_input=f"Day {i}: I walked the dog along the river " * 4,
                 agent_response="Nice walk.", timestamp=start + timedelta(days=i)) for i in range(n)]


def _worker(runtime, context_tokens: int):  # noqa: ANN001, ANN202
    worker = copy.copy(runtime.persona_worker)
    worker.llm = StubLLM(context_tokens=context_tokens, completion_tokens=512)
    return worker


def _facts(runtime, user_id: str, n: int) -> None:  # noqa: ANN001
    things = ["violin", "chess", "kayak", "pottery", "tango", "sushi", "judo", "bonsai", "opera", "surfing",
              "origami", "falconry"]
    runtime.persona.add_facts("user", user_id, None, [Fact(text=f"The user took up {t} in spring {2000 + i}.",
                                                           date="") for i, t in enumerate(things[:n])], {})


def test_facts_never_cost_a_page_when_every_waiting_page_fits(runtime, user_id) -> None:  # noqa: ANN001
    _facts(runtime, user_id, 12)
    worker = _worker(runtime, 3000)
    budget = worker.llm.prompt_budget(512)
    pages = _pages(user_id, 40)
    alone = worker._how_many_fit(None, pages, {})
    pages = pages[:alone]  # just fits the window, with a little room left
    every_fact = {f"F{i + 1}": e for i, e in enumerate(runtime.persona.list("user", user_id))}
    everything = worker._how_many_fit(None, pages, every_fact)
    assert everything < len(pages), "showing all the facts would leave pages over"
    n, shown = worker._plan(user_id, None, pages)
    assert n == len(pages) and len(shown) < 12
    assert worker.llm.count_tokens(worker._messages(None, pages[:n], shown)) <= budget


def test_a_call_bounded_by_the_window_still_shows_facts(runtime, user_id) -> None:  # noqa: ANN001
    """A small window (a 4k model) with more pages waiting than fit: pages are left for the next call anyway,
    so the facts keep their floor instead of never being shown."""
    _facts(runtime, user_id, 12)
    worker = _worker(runtime, 3000)
    budget = worker.llm.prompt_budget(512)
    pages = _pages(user_id, 40)
    alone = worker._how_many_fit(None, pages, {})
    assert 1 < alone < len(pages)
    n, shown = worker._plan(user_id, None, pages)
    assert shown and 1 <= n <= alone
    assert worker.llm.count_tokens(worker._messages(None, pages[:n], shown)) <= budget


def test_few_pages_leave_the_facts_their_share(runtime, user_id) -> None:  # noqa: ANN001
    _facts(runtime, user_id, 12)
    pages = _pages(user_id, 3)
    worker = _worker(runtime, 6000)
    n, shown = worker._plan(user_id, None, pages)
    assert n == 3 and len(shown) == 12

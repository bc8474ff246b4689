"""The context within a token budget (producers/context/fit.py): what goes in is chosen by value per token,
the prompt never exceeds the budget by the context's estimate (schemas/tokens.py, characters / 4), and the
fitted context holds exactly what its prompt holds."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from producers.context import RetrievedContext, RetrievedPage
from producers.context.render import UNTIMED_NOTE, quote
from schemas.persona import KnowledgeEntry, Trait, UserProfile
from schemas.tokens import estimate_tokens
from schemas.turns import Page

T0 = datetime(2023, 5, 8, 13, 56, tzinfo=timezone.utc)
TOPIC = "Caroline and Melanie talk about painting, a sunrise over the lake and an art class for kids."


def _page(i: int, text: str, *, segment: str = "s1", chain: str = "", score: float | None = None) -> RetrievedPage:
    return RetrievedPage(turn_id=f"t{i}", user_input=text, agent_response=f"That sounds lovely ({i}).",
                         timestamp=T0 + timedelta(minutes=i), score=score if score is not None else 1.0 / (2 + i),
                         segment_id=segment, segment_summary=TOPIC if segment == "s1" else "Other things.",
                         chain_summary=chain, seq=i)


def _context(n_pages: int = 30) -> RetrievedContext:
    pages = [_page(i, f"Page {i}: I painted a sunrise over the lake and signed up for class number {i}.",
                   segment="s1" if i % 3 else "s2",
                   chain=f"Page {i}: I painted a sunrise over the lake" if i == 1 else
                   ("They planned a trip to Sweden with grandmother Ingrid in June." if i == 2 else ""))
             for i in range(n_pages)]
    recent = [Page(seq=100 + i, user_id="u1", turn_id=f"r{i}", user_input=f"Recent message {i} about my week.",
                   agent_response="Tell me more!", timestamp=T0 + timedelta(days=30, minutes=i)) for i in range(8)]
    profile = UserProfile(user_id="u1", summary="A painter who loves the outdoors and teaches kids.", traits=[
        Trait(dimension="interest: painting", level="high", evidence="paints sunrises"),
        Trait(dimension="diet: vegetarian", level="medium", evidence="orders veggie burgers"),
    ])
    facts = [
        KnowledgeEntry(entry_id="f1", kind="user", text="Her grandmother Ingrid lives in Gothenburg.", user_id="u1",
                       score=0.8),
        KnowledgeEntry(entry_id="f2", kind="user", text="Owns a bicycle with a broken bell.", user_id="u1",
                       score=0.1),
        KnowledgeEntry(entry_id="f3", kind="user", text="I painted a sunrise over the lake", user_id="u1",
                       score=0.9),  # says nothing the pages do not
    ]
    return RetrievedContext(user_id="u1", query="What did I paint, and who is Ingrid?", short_term=recent,
                            pages=pages, user_profile=profile, user_knowledge=facts, assistant_knowledge=[])


def _holds_exactly(fitted: RetrievedContext, full: RetrievedContext, prompt: str) -> None:
    """Every structured item is in the prompt and every left-out one is not."""
    kept = {p.turn_id for p in fitted.pages}
    for page in full.pages:
        line = json.dumps({"user": page.user_input, "assistant": page.agent_response}, ensure_ascii=False)
        assert (line in prompt) == (page.turn_id in kept), page.turn_id
    for page in fitted.short_term:
        assert page.user_input in prompt
    for entry in full.user_knowledge:
        assert (quote(entry.text) in prompt) == (entry in fitted.user_knowledge), entry.text
    traits = fitted.user_profile.traits if fitted.user_profile else []
    for trait in full.user_profile.traits:
        assert (quote(trait.dimension) in prompt) == (trait in traits)
    summaries = {p.segment_summary for p in fitted.pages if p.segment_summary}
    for summary in {p.segment_summary for p in full.pages}:
        assert prompt.count(quote(summary)) == (1 if summary in summaries else 0)  # once, never per page
    for page in fitted.pages:
        if page.chain_summary:
            assert quote(page.chain_summary) in prompt


@pytest.mark.parametrize("budget", [100, 150, 300, 500, 1000, 2000, 4000, 20_000])
def test_the_prompt_fits_the_budget_and_holds_what_the_fields_hold(budget: int) -> None:
    full = _context()
    fitted = full.fit(budget)
    prompt = fitted.to_prompt()
    assert estimate_tokens(prompt) <= budget
    assert full.to_prompt(max_tokens=budget) == prompt
    assert fitted.max_tokens == budget
    _holds_exactly(fitted, full, prompt)
    ids = fitted.turn_ids()
    assert len(ids) == len(set(ids))


def test_value_per_token_decides() -> None:
    full = _context()
    fitted = full.fit(1000)
    prompt = fitted.to_prompt()
    # The most relevant pages are in; the pages that did not fit are the least relevant ones.
    kept = [p.turn_id for p in fitted.pages]
    assert kept[:3] == ["t0", "t1", "t2"] and len(kept) < len(full.pages)
    assert max(p.score for p in full.pages if p.turn_id not in kept) <= min(p.score for p in fitted.pages)
    # Newest recent turns first, without a gap.
    assert [p.turn_id for p in fitted.short_term] == [f"r{i}" for i in range(8 - len(fitted.short_term), 8)]
    # A chain overview that repeats its page is left out; one that adds (Sweden, Ingrid) is kept.
    chains = {p.turn_id: p.chain_summary for p in fitted.pages}
    assert chains["t1"] == "" and "Sweden" in chains["t2"]
    # A fact the pages already say is left out; the relevant new one is in; the irrelevant one is not.
    assert [e.entry_id for e in fitted.user_knowledge] == ["f1"]
    assert "broken bell" not in prompt


def test_traits_are_ranked_by_the_question() -> None:
    """Room for one trait: the one the question touches goes in, though it is listed second."""
    traits = [Trait(dimension="diet: vegetarian", level="medium", evidence="orders veggie burgers"),
              Trait(dimension="interest: painting", level="high", evidence="paints sunrises over the lake")]
    ctx = RetrievedContext(user_id="u1", query="What do I like to paint?",
                           user_profile=UserProfile(user_id="u1", traits=traits))
    room = estimate_tokens(ctx.model_copy(update={"user_profile": None}).to_prompt())
    fitted = ctx.fit(room + 22)
    assert [t.dimension for t in fitted.user_profile.traits] == ["interest: painting"]
    assert "vegetarian" not in fitted.to_prompt()


def test_a_turn_is_never_in_the_prompt_twice() -> None:
    full = _context(5)
    twin = full.pages[0]
    doubled = full.model_copy(update={
        "short_term": [*full.short_term, Page(seq=200, user_id="u1", turn_id=twin.turn_id, user_input=twin.user_input,
                                             agent_response=twin.agent_response, timestamp=twin.timestamp)],
        "pages": [*full.pages, twin],
    })
    fitted = doubled.fit(4000)
    assert fitted.turn_ids().count(twin.turn_id) == 1
    assert fitted.to_prompt().count(quote(twin.user_input)) == 1


def test_no_budget_keeps_everything_and_bad_budgets_are_rejected() -> None:
    full = _context(5)
    assert full.fit(0) == full
    for bad in (-1, 1, 99, 1.5, True, "2000"):
        with pytest.raises(ValueError, match=r"^max_tokens:"):
            full.fit(bad)  # type: ignore[arg-type]


def _session(n: int, *, same_time: bool) -> RetrievedContext:
    """n pages without summaries, all said in one session (one time label) or each in a session of its own."""
    pages = [RetrievedPage(turn_id=f"t{i}", user_input=f"Page {i}: we talked about the lake and class {i}.",
                           agent_response="Nice.", timestamp=T0 if same_time else T0 + timedelta(days=i),
                           score=1.0 / (1 + i), seq=i) for i in range(n)]
    return RetrievedContext(user_id="u1", query="What about the lake?", pages=pages)


def test_a_session_says_its_time_once() -> None:
    """Pages of one session sit together and only the first carries the time; the notice says how to read it.
    Pages of other sessions keep their own time, and with every page timed the note is not said."""
    other = RetrievedPage(turn_id="o1", user_input="Another day.", agent_response="Ok.",
                          timestamp=T0 + timedelta(days=3), score=0.9, seq=50)
    one = _session(3, same_time=True)
    ctx = one.model_copy(update={"pages": [one.pages[0], other, *one.pages[1:]]})
    lines = [line for line in ctx.to_prompt().splitlines() if '{"user"' in line]
    assert [json.loads(line[line.index("{"):])["user"][:6] for line in lines] == ["Page 0", "Page 1", "Page 2",
                                                                                  "Anothe"]
    assert [line.startswith("- [") for line in lines] == [True, False, False, True]
    assert UNTIMED_NOTE in ctx.to_prompt()
    assert UNTIMED_NOTE not in _session(3, same_time=False).to_prompt()


def test_recent_turns_of_one_time_say_it_once() -> None:
    recent = [Page(seq=i, user_id="u1", turn_id=f"r{i}", user_input=f"Message {i}", agent_response="Ok.",
                   timestamp=T0 if i < 2 else T0 + timedelta(minutes=5)) for i in range(3)]
    prompt = RetrievedContext(user_id="u1", query="q", short_term=recent).to_prompt()
    lines = [line for line in prompt.splitlines() if '{"user"' in line]
    assert [line.startswith("- [") for line in lines] == [True, False, True]


@pytest.mark.parametrize("budget", [300, 1000, 2000])
def test_the_time_a_session_does_not_repeat_goes_to_more_pages(budget: int) -> None:
    """Each page is costed with its time; the room saved where a session says it once is filled with more
    pages, and the prompt still fits and holds exactly the pages its fields hold."""
    same, apart = _session(150, same_time=True).fit(budget), _session(150, same_time=False).fit(budget)
    prompt = same.to_prompt()
    assert estimate_tokens(prompt) <= budget
    assert len(same.pages) > len(apart.pages)
    kept = {p.turn_id for p in same.pages}
    assert kept == {f"t{i}" for i in range(len(kept))}  # the most relevant ones, no gap
    for page in _session(150, same_time=True).pages:
        assert (quote(page.user_input) in prompt) == (page.turn_id in kept)

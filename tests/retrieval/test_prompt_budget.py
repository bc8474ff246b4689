"""The context within a token budget (schemas.prompt.fit): what goes in is chosen by value per token, the
prompt never exceeds the budget by the budget's fixed estimate (schemas/tokens.py), and the fitted context
holds exactly what its prompt holds."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from schemas.context import RetrievedContext, RetrievedPage
from schemas.persona import KnowledgeEntry, Trait, UserProfile
from schemas.prompt import quote
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

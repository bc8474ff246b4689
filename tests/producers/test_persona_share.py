"""The long-term persona's share of a prompt (producers/context/fit.py, MEMORYOS_PERSONA_SHARE): a user
with a profile has it in every prompt, with the facts and traits the query touches, however many pages
compete; what the share leaves goes to pages."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from producers.context import PackingParams, RetrievedContext, RetrievedPage
from producers.context.render import quote
from schemas.persona import KnowledgeEntry, Trait, UserProfile
from schemas.settings import DEFAULT_PERSONA_SHARE, PROFILE_SUMMARY_TOKENS, Settings
from schemas.tokens import estimate_tokens

T0 = datetime(2023, 5, 8, 13, 56, tzinfo=timezone.utc)
SUMMARY = ("The user is a painter who moved to Berlin in 2023, works as a UX designer and adopted a cat called "
           "Pimenta. She volunteers at an LGBTQ support group.")


def _context(n_pages: int = 200, summary: str = SUMMARY) -> RetrievedContext:
    pages = [RetrievedPage(turn_id=f"t{i}", user_input=f"Page {i}: we talked about the weather and trains {i}.",
                           agent_response=f"Indeed, number {i}.", timestamp=T0 + timedelta(minutes=i),
                           score=1.0 / (1 + i)) for i in range(n_pages)]
    profile = UserProfile(user_id="u1", summary=summary, traits=[
        Trait(dimension="interest: painting", level="high", evidence="paints sunrises over the lake"),
        Trait(dimension="diet: vegetarian", level="medium", evidence="orders veggie burgers"),
    ])
    facts = [
        KnowledgeEntry(entry_id="f1", kind="user", text="The user's cat Pimenta was adopted from a shelter.",
                       date="2023-06-01", user_id="u1", score=0.7),
        KnowledgeEntry(entry_id="f2", kind="user", text="The user owns a bicycle with a broken bell.",
                       user_id="u1", score=0.1),
    ]
    return RetrievedContext(user_id="u1", query="Where did my cat Pimenta come from?", pages=pages,
                            user_profile=profile, user_knowledge=facts)


@pytest.mark.parametrize("budget", [500, 1000, 2000, 4000])
def test_profile_and_relevant_fact_in_every_prompt(budget: int) -> None:
    full = _context()
    fitted = full.fit(budget)
    prompt = fitted.to_prompt()
    assert estimate_tokens(prompt) <= budget
    assert fitted.user_profile is not None and fitted.user_profile.summary
    assert quote(fitted.user_profile.summary) in prompt
    if budget >= 1000:
        assert fitted.user_profile.summary == SUMMARY
        assert [e.entry_id for e in fitted.user_knowledge] == ["f1"] and "[2023-06-01]" in prompt
    assert "broken bell" not in prompt  # a fact the query does not touch stays out of the share
    # Pages fill the rest: where pages compete for all of it (no share, no derived reserve), the same budget
    # holds more pages and no profile.
    without = full.fit(budget, PackingParams(persona_share=0.0, derived_share=0.0))
    assert len(without.pages) > len(fitted.pages) and without.user_profile is None


def test_a_long_summary_is_cut_to_the_share() -> None:
    long = " ".join(f"Sentence {i} about the user's life in Berlin and her work." for i in range(80))
    fitted = _context(summary=long).fit(2000)
    kept = fitted.user_profile.summary
    assert kept.endswith("…") and long.startswith(kept.removesuffix(" …"))
    assert estimate_tokens(kept) <= DEFAULT_PERSONA_SHARE * 2000
    assert quote(kept) in fitted.to_prompt()


def test_unused_share_goes_to_pages_and_no_persona_costs_nothing() -> None:
    bare = _context().model_copy(update={"user_profile": None, "user_knowledge": []})
    assert bare.fit(2000).pages == bare.fit(2000, PackingParams(persona_share=0.0)).pages


def test_the_setting_reaches_the_retriever(tmp_path) -> None:  # noqa: ANN001
    assert PackingParams().persona_share == DEFAULT_PERSONA_SHARE == Settings().persona_share
    # The default share holds a summary of the longest a merge stores, with room for facts.
    room = 2000 - 120  # the empty prompt's skeleton is under 120 tokens
    assert PROFILE_SUMMARY_TOKENS + 10 < DEFAULT_PERSONA_SHARE * room
    from memoryos_workers.runtime import Runtime

    rt = Runtime(Settings(persona_share=0.3, data_dir=tmp_path))
    try:
        assert rt.retriever.packing.persona_share == 0.3
    finally:
        rt.close()
    with pytest.raises(ValueError, match="persona_share"):
        Settings(persona_share=0.9)


def test_a_fact_with_its_time_is_kept_though_the_pages_say_its_words() -> None:
    """Pages say "I moved to Berlin" and, older, "I live in Paris"; only the fact says which is true now. A
    fact with a window is worth its time, whatever its words. A score of 0.2 is how low MiniLM scores a plain
    question against the fact that answers it (0.23 for "What is her job now?"), so it is not cut as unrelated."""
    moved = datetime(2024, 10, 10, tzinfo=timezone.utc)
    pages = [
        RetrievedPage(turn_id="old", user_input="I live in Paris and I love it.", agent_response="Nice!",
                      timestamp=T0, score=0.9),
        RetrievedPage(turn_id="new", user_input="I moved to Berlin.", agent_response="Exciting!",
                      timestamp=moved, score=0.8),
    ] + [RetrievedPage(turn_id=f"t{i}", user_input=f"Weather and trains {i}.", agent_response="Indeed.",
                       timestamp=T0 + timedelta(minutes=i), score=0.5 / (1 + i)) for i in range(200)]
    timed = KnowledgeEntry(entry_id="f1", fact_id="f1", kind="user", text="Moved to Berlin.",
                           user_id="u1", score=0.2, valid_from=moved.timestamp())
    untimed = timed.model_copy(update={"entry_id": "f2", "fact_id": "f2", "valid_from": None})
    ctx = RetrievedContext(user_id="u1", query="Where does she live now?", pages=pages,
                           user_profile=UserProfile(user_id="u1", summary=SUMMARY), user_knowledge=[timed])
    fitted = ctx.fit(2000)
    assert {"old", "new"} <= {p.turn_id for p in fitted.pages}, "the pages that say the words are chosen"
    assert [e.entry_id for e in fitted.user_knowledge] == ["f1"]
    assert '[since 2024-10] "Moved to Berlin."' in fitted.to_prompt()
    # Without a time, a fact whose every word a chosen page says adds nothing and stays out.
    bare = ctx.model_copy(update={"user_knowledge": [untimed]}).fit(2000)
    assert bare.user_knowledge == []

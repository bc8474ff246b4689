"""A persona answer's traits and its user side, reviewed (pipeline/trait_form.py, pipeline/persona_review.py),
on what the real 0.5B model wrote at 2633685 for conv-26: seven traits named after the prompt's own words, all
with the same 338 characters of evidence, and a summary that was the assistant's line ("She recently ran a charity
race ..."). Its profile made every later persona prompt carry the copies; the calls then read 3, 2 and 1 pages."""

from __future__ import annotations

from datetime import datetime, timezone

from memoryos_workers.pipeline.answer_schemas import persona_schema
from memoryos_workers.pipeline.persona_quality import (
    fact_without_subject,
    repair_summary,
    source_stems,
    summary_problems,
)
from memoryos_workers.pipeline.persona_review import review
from memoryos_workers.pipeline.profile_merge import prompt_profile
from memoryos_workers.pipeline.trait_form import (
    DIMENSION_CHARS,
    EVIDENCE_CHARS,
    evidence_sentence,
    names_a_dimension,
    review_traits,
)
from schemas.persona import Fact, PersonaExtraction, ProfileUpdate, Trait, TraitUpdate, UserProfile
from schemas.turns import Page

# conv-26's shape: the user (Caroline) and the assistant (Melanie), whose line the model credited to the user.
TURNS = [
    ("I went to a LGBTQ support group yesterday and it was so powerful.",
     "That's great! I ran a charity race for mental health last Saturday, it was so rewarding."),
    ("I'm looking into counseling and mental health jobs, I want to help people like me.",
     "You'd be great at that. Self-care is really important to me these days."),
]
# The stored evidence, as the model wrote it for every one of the seven traits (338 characters).
EVIDENCE = ("The user has been working in mental health for the past year. She recently ran a charity race for "
            "mental health last Saturday, and she's starting to realize that self-care is really important. She is "
            "also interested in counseling and mental health jobs and wants to help people with similar experiences "
            "to hers, which is why she has been looking into them lately.")
DIMENSIONS = ["interests", "values", "habits", "personality", "life situation", "main interests and goals", "traits"]


def _pages() -> list[Page]:
    when = datetime(2023, 5, 8, tzinfo=timezone.utc)
    return [Page(user_id="u", turn_id=f"t{i}", seq=i, user_input=u, agent_response=a, timestamp=when)
            for i, (u, a) in enumerate(TURNS)]


def _user_sources() -> frozenset[str]:
    return source_stems(u for u, _ in TURNS)


def _trait(dimension: str, evidence: str) -> TraitUpdate:
    return TraitUpdate(dimension=dimension, level="high", evidence=evidence)


def test_the_stored_traits_are_not_traits() -> None:
    kept, invented, copies = review_traits([_trait(d, EVIDENCE) for d in DIMENSIONS], _user_sources())
    # The first sentence ("... working in mental health for the past year") is said by nobody: all six named
    # traits are invented; "traits" names the answer's field, not a dimension of the user.
    assert (kept, invented, copies) == ([], 6, 1)


def test_a_grounded_trait_is_kept_once_with_one_sentence_of_evidence() -> None:
    said = "The user went to a LGBTQ support group and found it powerful. It was yesterday, a long evening."
    traits = [_trait("community: LGBTQ support", said), _trait("values", said),
              _trait("career: counseling", "The user is looking into counseling and mental health jobs.")]
    kept, invented, copies = review_traits(traits, _user_sources())
    assert [(t.dimension, t.evidence) for t in kept] == [
        ("community: LGBTQ support", "The user went to a LGBTQ support group and found it powerful."),
        ("career: counseling", "The user is looking into counseling and mental health jobs."),
    ]
    assert (invented, copies) == (0, 1)


def test_evidence_and_dimension_bounds() -> None:
    long = "The user " + "really " * 40 + "likes hiking."
    cut = evidence_sentence(long)
    assert len(cut) <= EVIDENCE_CHARS and long.startswith(cut) and not cut.endswith(" ")
    assert evidence_sentence("  ") == ""
    assert names_a_dimension("interest: hiking")
    assert not names_a_dimension("Traits") and not names_a_dimension("x" * (DIMENSION_CHARS + 1))
    assert not names_a_dimension("the things the user keeps coming back to")


def test_the_schema_bounds_trait_fields() -> None:
    trait = persona_schema(3)["properties"]["profile"]["properties"]["traits"]["items"]["properties"]
    assert trait["evidence"]["maxLength"] == EVIDENCE_CHARS
    assert trait["dimension"]["maxLength"] == DIMENSION_CHARS


def test_the_prompt_shows_stored_evidence_cut_to_its_first_sentence() -> None:
    profile = UserProfile(user_id="u", summary="The user attends a support group.",
                          traits=[Trait(dimension=d, level="high", evidence=EVIDENCE) for d in DIMENSIONS])
    shown = prompt_profile(profile)
    assert shown is not None
    assert {t["evidence"] for t in shown["traits"]} == {
        "The user has been working in mental health for the past year."}


def test_the_user_side_is_said_in_the_users_lines_not_the_assistants() -> None:
    answer = PersonaExtraction(
        profile=ProfileUpdate(
            summary="She recently ran a charity race for mental health last Saturday. The user went to a support "
                    "group.",
            traits=[_trait(d, EVIDENCE) for d in DIMENSIONS]),
        user_facts=[Fact(text="The user ran a charity race for mental health last Saturday.", date=""),
                    Fact(text="The user went to a LGBTQ support group yesterday.", date="")],
        assistant_facts=[Fact(text="The assistant ran a charity race for mental health last Saturday.", date="")],
    )
    out = review(answer, _pages())
    assert out.value.profile.summary == "The user went to a support group."
    assert [f.text for f in out.value.user_facts] == ["The user went to a LGBTQ support group yesterday."]
    assert [f.text for f in out.value.assistant_facts] == [
        "The assistant ran a charity race for mental health last Saturday."]
    assert out.value.profile.traits == []
    assert (out.invented_facts, out.invented_traits, out.copied_traits) == (1, 6, 1)


def test_a_summary_that_opens_with_a_pronoun() -> None:
    said = [u for u, _ in TURNS]
    assert repair_summary("She recently went to a support group.", said) == ""
    kept = "Caroline went to a support group. She is looking into counseling jobs."
    assert repair_summary(kept, said) == kept
    assert [p.split(":")[0] for p in summary_problems("She went to a support group.", said)] == [
        "opens with a pronoun"]


def _call(turns: list[str]) -> list[Page]:
    when = datetime(2023, 6, 1, tzinfo=timezone.utc)
    return [Page(user_id="u", turn_id=f"c{i}", seq=i, user_input=u, agent_response="That's lovely.", timestamp=when)
            for i, u in enumerate(turns)]


def test_memory_restates_but_does_not_launder_invention_over_two_calls() -> None:
    """The real 0.5B model at c9fcd00: a trait with 2 words nobody said ("past year") was stored; the next call,
    shown it, wrote "a 25-year-old male ... for the past year" and the stored trait's words let 2 more through."""
    first = PersonaExtraction(profile=ProfileUpdate(summary="", traits=[
        _trait("career", "The user has been working in mental health for the past year.")]), user_facts=[],
        assistant_facts=[])
    out1 = review(first, _call(["I've been working on my career in mental health.", "Counseling is my goal."]))
    stored = out1.value.profile.traits
    assert [t.evidence for t in stored] == ["The user has been working in mental health for the past year."]
    known = [f"{t.dimension} {t.evidence}" for t in stored]  # as persona_extraction._known shows it

    laundered = "The user is a 25-year-old male who has been working in mental health for the past year."
    restated = "The user has been working in mental health for the past year."
    second = PersonaExtraction(
        profile=ProfileUpdate(summary=f"{laundered} The user paints sunsets.", traits=[
            _trait("career", restated), _trait("identity", "The user is a 25-year-old male in mental health.")]),
        user_facts=[Fact(text=laundered, date=""), Fact(text=restated, date="")], assistant_facts=[])
    out2 = review(second, _call(["I painted a sunset by the lake last weekend.", "Painting calms me down."]),
                  known=known)
    assert out2.value.profile.summary == "The user paints sunsets."
    assert [t.evidence for t in out2.value.profile.traits] == [restated]
    assert [f.text for f in out2.value.user_facts] == [restated]
    assert (out2.invented_sentences, out2.invented_traits, out2.invented_facts) == (1, 1, 1)


def test_a_line_addressed_to_the_user_by_name_is_not_a_fact() -> None:
    stored = "Caroline, those lessons are great - self-acceptance and finding support are key."  # c9fcd00's only fact
    answer = PersonaExtraction(profile=ProfileUpdate(summary="", traits=[]), assistant_facts=[], user_facts=[
        Fact(text=stored, date=""), Fact(text="Caroline, you did so well!", date=""),
        Fact(text="Caroline went to a LGBTQ support group yesterday.", date="")])
    out = review(answer, _pages())
    assert [f.text for f in out.value.user_facts] == ["Caroline went to a LGBTQ support group yesterday."]
    assert out.rejected == 2  # as lines opening with chat are: whom they are about cannot be told
    assert fact_without_subject(stored)
    assert not fact_without_subject("Caroline, a counselor, went to a support group.")


def test_a_gerund_headline_before_a_clause_about_no_one_is_not_a_fact() -> None:
    """The real 0.5B model stored "Researching adoption agencies - it's been a dream ..." at 9d4c1b2: the user's
    line with "I" taken out, whose dream it is no longer told. The same shape naming its subject is kept."""
    stored = ("Researching adoption agencies \u2014 it's been a dream to have a family and give a loving home. "
              "Their inclusivity and support really spoke to the user.")
    named = "Researching adoption agencies - it has been a dream of the user to have a family."
    pages = [Page(user_id="u", turn_id="t0", seq=0, timestamp=datetime(2023, 5, 8, tzinfo=timezone.utc),
                  user_input="Researching adoption agencies \u2014 it's been a dream to have a family and give a "
                             "loving home. Their inclusivity and support really spoke to me.",
                  agent_response="That's wonderful!")]
    answer = PersonaExtraction(profile=ProfileUpdate(summary="", traits=[]), assistant_facts=[], user_facts=[
        Fact(text=stored, date=""), Fact(text=named, date="")])
    out = review(answer, pages)
    assert [f.text for f in out.value.user_facts] == [named]
    assert out.rejected == 1  # as a line addressed to someone is: whom it is about cannot be told
    assert fact_without_subject(stored)
    for kept in ("Volunteering at the shelter is Caroline's way to relax: she goes every week.",
                 "Painting sunsets - it relaxes the user.", "Caroline went hiking - it was fun."):
        assert not fact_without_subject(kept), kept


def test_a_refusal_in_the_answer_is_dropped_not_stored_or_asked_again() -> None:
    """The 0.5B model answered part of a persona call with "I'm sorry, I can't assist with that." (080e2a8): the
    first-person repair made it an assistant fact. It is dropped as chat is (asking again would not help)."""
    answer = PersonaExtraction(
        profile=ProfileUpdate(summary="Caroline went to a LGBTQ support group. I'm sorry, but I can't assist with "
                                      "that.", traits=[]),
        user_facts=[Fact(text="Caroline went to a LGBTQ support group yesterday.", date="")],
        assistant_facts=[Fact(text="I'm sorry, Caroline. I can't assist with that.", date=""),
                         Fact(text="I can't assist with that.", date=""),
                         Fact(text="The assistant ran a charity race for mental health.", date="")])
    out = review(answer, _pages())
    assert [f.text for f in out.value.assistant_facts] == ["The assistant ran a charity race for mental health."]
    assert out.value.profile.summary == "Caroline went to a LGBTQ support group."
    assert out.chat == 2 and out.rejected == 0 and not out.needs_retry


def test_a_summary_left_leading_with_a_pronoun_or_cut_mid_word_is_trimmed() -> None:
    """What the 0.5B model's summaries became at 0462d1c (bench/persona_answers.py recorded them): the invented
    first sentence dropped left "He ..." in the lead, and "It's a lot to take in, but he'" was kept whole."""
    from memoryos_workers.pipeline.persona_quality import trim_summary

    assert trim_summary("It's a lot to take in, but he'") == ""
    assert trim_summary("He has been involved in adoption agencies. The user's goal is to give kids a loving "
                        "home.") == "The user's goal is to give kids a loving home."
    assert trim_summary("Caroline paints. She loves sunsets. It's a lot to take in, but he'") == (
        "Caroline paints. She loves sunsets.")  # a later pronoun reads as the sentence before's subject
    assert trim_summary("The user loves hiking") == "The user loves hiking"  # one sentence, no full stop: whole
    pages = [Page(user_id="u", turn_id="t0", seq=0, timestamp=datetime(2023, 5, 8, tzinfo=timezone.utc),
                  user_input="I'm looking into adoption agencies that help LGBTQ+ folks with adoption. It's a lot "
                             "to take in, but I'm feeling hopeful.", agent_response="That's wonderful!")]
    written = ("The user is a 25-year-old male who has been working in mental health for the past year. He is "
               "currently looking into adoption agencies that help LGBTQ+ folks with adoption. It's a lot to take "
               "in, but he'")
    answer = PersonaExtraction(profile=ProfileUpdate(summary=written, traits=[]), user_facts=[],
                               assistant_facts=[])
    kept = review(answer, pages).value.profile.summary
    assert not kept.startswith(("He ", "It's")) and not kept.endswith("he'"), kept

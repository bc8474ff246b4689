"""The real-model persona checks (bench/persona_checks.py) fail on what the 0.5B model wrote before them
and pass on a persona that is one."""

from __future__ import annotations

from bench.persona_checks import copies_a_turn, fact_without_subject, summary_problems, theme_copies

TURNS = ["I'm feeling a bit overwhelmed with the kids & work. What's up with you? Anything new?",
         "I went to a LGBTQ support group yesterday and it was so powerful.",
         "That's lovely, I'm happy for you and Sam."]


def test_summary_must_be_a_third_person_portrait() -> None:
    assert summary_problems(TURNS[0], TURNS)  # a line of chat
    assert summary_problems("I had a long phone call with an old friend.", TURNS)  # first person
    assert summary_problems("", TURNS) == ["empty"]
    portrait = "Caroline is a transgender woman who attends an LGBTQ support group and plans to work in counselling."
    said = [*TURNS, "Hi Caroline! How's the counselling plan going?",
            "As a transgender woman, I want to work in counselling and help others."]
    assert summary_problems(portrait, said) == []
    # The same portrait of a user whose turns say nothing of it is invented (the 0.5B model's failure).
    assert [p.split(" (")[0] for p in summary_problems(portrait, TURNS)] == ["invented"]


def test_facts_name_their_subject() -> None:
    assert fact_without_subject(TURNS[2])  # an assistant's line
    assert fact_without_subject("She lives in Montreal.")
    assert not fact_without_subject("Lea lives in Montreal.")
    assert not fact_without_subject("The user adopted a cat called Pimenta.")


def test_themes_are_not_chat_fragments() -> None:
    assert theme_copies(["LGBTQ support group yesterday", "support groups", "family and work"], TURNS) == [
        "LGBTQ support group yesterday"]
    assert copies_a_turn("went to a LGBTQ support group yesterday", TURNS)
    assert not copies_a_turn("The user goes to a support group.", TURNS)


def test_fact_form_checks_fail_on_what_the_real_model_stored() -> None:
    """The user facts the 0.5B model stored for conv-26 (bench/results/real_llm_check.json, facts_all, before
    pipeline/fact_form.py) fail the three checks; the same facts in a fact's shape pass them."""
    from bench.persona_checks import CUT, EMPTY, NEAR_COPIES, REFUSED, REPORTED, fact_form_problems

    stored = [
        "The user said that he went to a LGBTQ support group yesterday and it was so powerful.",
        "The user is so lucky to have such a great support system around the user. Their love and encouragement has "
        "really helped the user accept and grow into the user's true self. They've been instrumental in the user's "
        "transition.",
        "The user said that he struggled with mental health, and support the user got was really helpful. It made "
        "the user realize how important it is for others to have a support system. So, the user started looking into",
        "The user said that he loved \"Becoming Nicole\" by Amy Ellis Nutt. It's a real inspiring true story about a "
        "trans girl and her family. It made the user feel connected and gave the user a lot of hope for the user's "
        "own path",
        "The user said that he struggled with mental health, and support the user got was really helpful. It made "
        "the user realize how important it is for others to have a support system. So, the user started",
        "Seeing the user's mentee's face light up when they saw the support was the best! Such a special moment.",
    ]
    found = fact_form_problems(stored)
    assert found[REPORTED] == [stored[0], stored[2], stored[3], stored[4]]
    assert found[NEAR_COPIES] == [f"{stored[2]} | {stored[4]}"]
    assert found[CUT] == [stored[2], stored[3], stored[4]]
    good = ["The user went to a LGBTQ support group.",
            "The user struggled with mental health. Support helped the user.",
            'The user loved "Becoming Nicole" by Amy Ellis Nutt.',
            "The user has a cat named Max",
            "The user lives in Berlin.", "The user lived in Paris before."]
    assert fact_form_problems(good) == {REPORTED: [], NEAR_COPIES: [], CUT: [], REFUSED: [], EMPTY: []}


def test_a_refusal_is_not_a_fact_nor_a_summary() -> None:
    """What the 0.5B model stored as assistant facts at 080e2a8 (its "I'm sorry, I can't assist with that.",
    put in the third person), against facts that merely say "can't" or "help"."""
    from bench.persona_checks import REFUSED, fact_form_problems, summary_problems

    stored = ["The assistant is sorry, Caroline. the assistant can't assist with that.",
              "the assistant can't assist with that."]
    fine = ["The user can't help smiling at the kids' paintings.", "The assistant helps with the garden on Sundays.",
            "The user cannot swim yet.", "Caroline can't help with the bake sale this year.",
            "The user is unable to help with the move in June.", "The user cannot assist at the shelter in May.",
            "Caroline works as an AI researcher."]
    assert fact_form_problems(stored + fine)[REFUSED] == stored
    assert any("declining" in p for p in summary_problems("I'm sorry, but I cannot assist with that.", []))
    assert any("declining" in p for p in summary_problems("As an AI language model, I cannot comply.", []))


def test_trait_checks_fail_on_what_the_real_model_stored() -> None:
    """The seven traits the 0.5B model stored for conv-26 at 2633685 (one evidence for all, the assistant's line
    in it; a dimension named "traits"), against a profile whose traits are traits."""
    from bench.persona_checks import TRAITS_APART, TRAITS_SAID, TRAITS_SHAPE, source_stems, trait_problems

    user = source_stems(["I went to a LGBTQ support group yesterday and it was so powerful.",
                         "I'm looking into counseling and mental health jobs."])
    evidence = ("The user has been working in mental health for the past year. She recently ran a charity race for "
                "mental health last Saturday.")
    stored = [(d, evidence) for d in ("interests", "values", "traits")]
    problems = trait_problems(stored, user)
    assert len(problems[TRAITS_SAID]) == 3
    assert problems[TRAITS_APART] == ["interests | values", "interests | traits", "values | traits"]
    assert len(problems[TRAITS_SHAPE]) == 3  # two sentences each, and "traits" names no dimension
    good = [("community: LGBTQ support", "The user went to a LGBTQ support group."),
            ("career: counseling", "The user is looking into counseling and mental health jobs.")]
    assert all(not v for v in trait_problems(good, user).values())


def test_a_fact_that_claims_nothing_fails_the_check() -> None:
    """"The user said", stored by the 0.5B model at d8fe291, passed every check of that run."""
    from bench.persona_checks import EMPTY, fact_form_problems

    assert fact_form_problems(["The user said", "The user moved to Berlin."])[EMPTY] == ["The user said"]
    assert fact_without_subject("Have a great time and learn a lot.")  # a wish addressed to someone

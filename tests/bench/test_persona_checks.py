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

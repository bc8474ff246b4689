"""A user fact's quote (pipeline/fact_quotes.py): a fact whose text fails the post-check is kept as the quoted
user line says it, in the third person, only when the quote stands in one of the user's lines. Lines from
LoCoMo conv-26's first session (the user is Caroline, the assistant Melanie)."""

from __future__ import annotations

from datetime import UTC, datetime

from memoryos_workers.pipeline.answer_schemas import persona_schema, read_persona
from memoryos_workers.pipeline.fact_quotes import quoted_sentences
from memoryos_workers.pipeline.persona_review import review
from memoryos_workers.testing.persona_responder import persona_answer
from schemas.persona import Fact, PersonaExtraction, ProfileUpdate
from schemas.turns import Page

USER = [
    "Hey Mel! Good to see you! How have you been?",
    "I went to a LGBTQ support group yesterday and it was so powerful.",
    "The support group has made me feel accepted and given me courage to embrace myself.",
    "I'm keen on counseling or working in mental health - I'd love to support those with similar issues.",
]
ASSISTANT = [
    "Hey Caroline! Good to see you! I'm swamped with the kids & work. What's up with you? Anything new?",
    "Wow, that's cool, Caroline! What happened that was so awesome? Did you hear any inspiring stories?",
    "That's really cool. You've got guts. What now?",
    "You'd be a great counselor! Your empathy and understanding will really help the people you work with.",
]
# What the 0.5B model wrote as a user fact, 8-16 times per answer (bench/persona_answers.py at 0462d1c): the
# assistant's charity race credited to the user, and a year in mental health nobody said.
INVENTED = ("The user has been working in mental health for the past year. She recently ran a charity race for "
            "mental health last Saturday.")


def _pages() -> list[Page]:
    at = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    return [Page(seq=i, turn_id=f"t{i}", user_id="u", user_input=u, agent_response=a, timestamp=at)
            for i, (u, a) in enumerate(zip(USER, ASSISTANT, strict=True))]


def _answer(*facts: Fact) -> PersonaExtraction:
    return PersonaExtraction(profile=ProfileUpdate(summary="", traits=[]), user_facts=list(facts), assistant_facts=[])


def test_a_quote_names_the_sentence_of_the_user_line_it_is_from() -> None:
    assert quoted_sentences("went to a LGBTQ support group", USER) == USER[1]
    # The quote's sentence only, whole, though the quote is a fragment of it.
    assert quoted_sentences("made me feel accepted", USER) == USER[2]
    # Case, punctuation and spacing as the model copies them do not matter; word order does.
    assert quoted_sentences("i went to a lgbtq  support-group", USER) == USER[1]
    assert quoted_sentences("support group LGBTQ a to went", USER) is None
    # Cut mid-word where the schema's maxLength stopped it.
    assert quoted_sentences("I'd love to support those with simi", USER) == USER[3]


def test_a_quote_in_no_user_line_or_too_short_names_nothing() -> None:
    assert quoted_sentences("I'm swamped with the kids & work", USER) is None  # the assistant's line
    assert quoted_sentences(INVENTED, USER) is None
    assert quoted_sentences("support group", USER) is None  # in two lines: which claim is not told
    assert quoted_sentences("", USER) is None


def test_an_invented_fact_with_a_true_quote_is_kept_as_the_users_line_in_the_third_person() -> None:
    fact = Fact(text=INVENTED, date="", quote="I'm keen on counseling or working in mental health")
    out = review(_answer(fact), _pages())
    assert [f.text for f in out.value.user_facts] == [
        "The user is keen on counseling or working in mental health - the user would love to support those with "
        "similar issues."]
    assert out.quoted == 1 and out.invented_facts == 0


def test_a_quote_of_the_assistants_line_or_an_invented_one_rescues_nothing() -> None:
    assistant_quote = Fact(text="The user is swamped with the kids and work.", date="",
                           quote="I'm swamped with the kids & work.")
    invented_quote = Fact(text=INVENTED, date="", quote=INVENTED)
    out = review(_answer(assistant_quote, invented_quote), _pages())
    assert out.value.user_facts == [] and out.quoted == 0 and out.invented_facts == 2


def test_a_fact_that_passes_keeps_its_own_words_whatever_its_quote() -> None:
    fact = Fact(text="The user went to an LGBTQ support group.", date="2023-05-07",
                quote="I went to a LGBTQ support group yesterday")
    out = review(_answer(fact), _pages())
    assert [f.text for f in out.value.user_facts] == ["The user went to an LGBTQ support group."]
    assert out.quoted == 0 and out.value.user_facts[0].date == "2023-05-07"


def test_a_quoted_greeting_or_question_is_not_a_fact() -> None:
    fact = Fact(text="", date="", quote="Hey Mel! Good to see you! How have you been?")
    out = review(_answer(fact), _pages())
    assert out.value.user_facts == [] and out.quoted == 0


def test_the_same_quoted_line_written_many_times_is_one_fact() -> None:
    looped = [Fact(text=INVENTED, date="", quote="it was so powerful") for _ in range(8)]
    out = review(_answer(*looped), _pages())
    assert [f.text for f in out.value.user_facts] == [
        "The user went to a LGBTQ support group yesterday and it was so powerful."]
    assert out.near_copies == 7


def test_the_schema_asks_for_the_quote_before_the_text_and_the_reader_keeps_it() -> None:
    item = persona_schema(4)["properties"]["user_facts"]["items"]
    assert list(item["properties"])[:2] == ["quote", "text"] and "quote" in item["required"]
    raw = {"profile": {"summary": "", "traits": []}, "retired": [], "assistant_facts": [],
           "user_facts": [{"quote": "it was so powerful", "text": "x", "date": "", "page": 1,
                           "supersedes": [], "confirms": []}]}
    read = read_persona(raw)
    assert read is not None and read.user_facts[0].quote == "it was so powerful"


def test_the_persona_test_model_quotes_the_line_each_user_fact_restates() -> None:
    pages = [{"index": i, "time": "2023-05-08", "user": u, "assistant": a}
             for i, (u, a) in enumerate(zip(USER, ASSISTANT, strict=True))]
    answer = persona_answer({"pages": pages})
    for fact in answer["user_facts"]:
        assert quoted_sentences(fact["quote"], USER) is not None


def test_what_the_model_stored_at_d8fe291_that_is_no_fact_is_dropped() -> None:
    """The real 0.5B model's run at d8fe291 passed every check but stored, among its user facts, "The user said"
    (claims nothing), the assistant's wish "Have a great time and learn a lot." (no subject; both its content
    words are in the user's lines too), and quote-derived facts with "the user" lower-case after a full stop."""
    pages = _pages()
    said = pages[0].model_copy(update={"user_input": "I'm going to a transgender conference this month. I'm so "
                                                     "excited to meet other people in the community."})
    facts = [Fact(text="The user said", date=""), Fact(text="Have a great time and learn a lot.", date=""),
             Fact(text="Fun!", date="", quote="conference this month. I'm so excited")]
    out = review(_answer(*facts), [said, *pages[1:]])
    assert [f.text for f in out.value.user_facts] == [
        "The user is going to a transgender conference this month. The user is so excited to meet other people "
        "in the community."]
    assert out.chat == 1 and out.rejected == 1 and out.quoted == 1

"""The persona post-check's pure parts (pipeline/persona_quality.py, pipeline/persona_review.py): what the 0.5B
model wrote is rejected or repaired, a persona that is one passes untouched, the retry is asked for only
when the summary or most facts are rejected, and its prompt carries reasons, not stored text."""

from __future__ import annotations

from datetime import datetime, timezone

from memoryos_workers.pipeline.persona_quality import (
    Memory,
    fact_without_subject,
    grounded,
    grounded_sentences,
    numbers,
    repair_fact,
    repair_summary,
    source_stems,
    summary_problems,
    third_person,
    unsupported,
)
from memoryos_workers.pipeline.persona_review import retry_messages, review, reviewed
from schemas.persona import Fact, PersonaExtraction, ProfileUpdate
from schemas.turns import Page

TURNS = [("I went to a LGBTQ support group yesterday and it was so powerful.",
          "Wow, that's cool! What happened that was so awesome? Did you hear any inspiring stories?"),
         ("Thanks, Melanie! My goal is to give kids a loving home.", "That's lovely, I'm happy for you and Sam.")]


def _pages() -> list[Page]:
    when = datetime(2023, 5, 8, tzinfo=timezone.utc)
    return [Page(user_id="u", turn_id=f"t{i}", seq=i, user_input=u, agent_response=a, timestamp=when)
            for i, (u, a) in enumerate(TURNS)]


def _answer(summary: str, facts: list[str], assistant: tuple[str, ...] = ()) -> PersonaExtraction:
    return PersonaExtraction(profile=ProfileUpdate(summary=summary, traits=[]),
                             user_facts=[Fact(text=t, date="") for t in facts],
                             assistant_facts=[Fact(text=t, date="") for t in assistant])


def test_first_person_facts_are_said_in_the_third_person() -> None:
    assert repair_fact("I adopted a cat called Pimenta.", "The user") == "The user adopted a cat called Pimenta."
    assert repair_fact("I love painting and I go hiking.", "The user") == (
        "The user loves painting and the user goes hiking.")
    assert repair_fact("I'm keen on counseling.", "The user") == "The user is keen on counseling."
    assert repair_fact("My sister lives in Lyon.", "The user") == "The user's sister lives in Lyon."
    assert repair_fact("I recommend a daily walk.", "The assistant") == "The assistant recommends a daily walk."
    for repaired in ("The user adopted a cat called Pimenta.", "The user's sister lives in Lyon."):
        assert not fact_without_subject(repaired)


def test_facts_that_cannot_tell_whom_they_are_about_are_rejected() -> None:
    assert repair_fact("Thanks, Melanie! My goal is to give kids a loving home.", "The user") is None
    assert repair_fact("Wow, that's cool!", "The user") is None
    assert repair_fact("She lives in Montreal.", "The user") is None
    assert repair_fact("We went biking with the gang.", "The user") is None  # whose "we"?
    assert third_person("Our dog is old.", "The user") is None
    # A fact that names its subject is kept as it is.
    assert repair_fact("Caroline plans to adopt children.", "The user") == "Caroline plans to adopt children."


def test_the_subject_check_sees_a_capitalised_first_person_and_chat_openers() -> None:
    assert fact_without_subject("My goal is to give kids a loving home.")
    assert fact_without_subject("Thanks for the tip about the museum.")
    assert not fact_without_subject("The user lives in the US.")  # "US" is not "us"
    # Chat addressed to "you" or asking (stored by the 0.5B model in a run before this rule) names no subject,
    # unless it reports what a named subject said.
    assert fact_without_subject("Looks like you had a great day! How was it? You all look so happy!")
    assert fact_without_subject("Did the kids like the beach?")
    assert not fact_without_subject("The user said: What made you try pottery?")
    assert not fact_without_subject("Caroline asked whether the museum opens on Sundays?")
    assert not fact_without_subject("The user is lucky to have friends like you.")  # opens with its subject


def test_summary_keeps_only_sentences_about_the_user() -> None:
    said = [t for pair in TURNS for t in pair]
    chat = TURNS[0][1]
    assert repair_summary(chat, said) == ""  # exclamation and questions: nothing is left
    assert repair_summary(TURNS[0][0], said) == ""  # a turn copied as said
    mixed = "Wow, that's cool! I love my painting classes. The user plans to adopt children."
    fixed = repair_summary(mixed, said)
    assert fixed == "The user loves the user's painting classes. The user plans to adopt children."
    # Said in the third person, but the turns say nothing of painting classes or adopting: both invented.
    assert [p.split(" (")[0] for p in summary_problems(fixed, said)] == ["invented", "invented"]
    assert summary_problems(fixed, [*said, "I love my painting classes, and we plan to adopt children."]) == []
    portrait = "Caroline is a transgender woman who attends a support group. She wants to adopt children."
    assert repair_summary(portrait, said) == portrait


def test_review_of_a_chat_answer_asks_for_a_retry_with_reasons() -> None:
    answer = _answer(TURNS[0][1], [TURNS[1][0], "She is happy.", "I went to a support group."],
                     assistant=(TURNS[1][1],))
    got = review(answer, _pages())
    assert got.summary_rejected and got.needs_retry
    assert got.value.profile.summary == ""  # the merge then keeps the stored summary
    assert [f.text for f in got.value.user_facts] == ["The user went to a support group."]
    assert got.value.assistant_facts == [] and (got.rejected, got.repaired, got.written) == (3, 1, 4)
    messages = retry_messages([{"role": "system", "content": "s"}, {"role": "user", "content": "<data>x</data>"}],
                              got.reasons)
    assert messages[0] == {"role": "system", "content": "s"} and messages[1]["content"].startswith("<data>x</data>")
    assert "rejected" in messages[1]["content"] and "Melanie" not in messages[1]["content"]  # reasons, not content


def test_a_good_answer_passes_untouched_and_a_few_bad_facts_do_not_retry() -> None:
    good = _answer("The user goes to an LGBTQ support group and wants to give kids a loving home.",
                   ["The user goes to a support group.", "The user's goal is a loving home for kids.", "Wow, so cool!"])
    got = review(good, _pages())
    assert not got.needs_retry and got.rejected == 1 and got.repaired == 0
    assert got.value.profile.summary == good.profile.summary
    assert [f.text for f in got.value.user_facts] == ["The user goes to a support group.",
                                                     "The user's goal is a loving home for kids."]


def test_reviewed_asks_once_and_keeps_what_passes() -> None:
    asked: list[list[str]] = []
    counted: dict[str, int] = {}
    bad = _answer(TURNS[0][1], [TURNS[1][0], "She is happy."])

    def ask(reasons: list[str]) -> PersonaExtraction:
        asked.append(reasons)
        return bad  # the model does no better: nothing more is asked, only what passes is kept

    value = reviewed(bad, _pages(), ask, lambda **c: counted.update(c), "u")
    assert len(asked) == 1 and asked[0]
    assert value.profile.summary == "" and value.user_facts == []
    assert counted["persona_quality_retries"] == 1 and counted["persona_summaries_rejected"] == 1

    better = _answer("The user wants a loving home for kids.", ["The user wants a loving home for kids."])
    value = reviewed(bad, _pages(), lambda reasons: better, lambda **c: None, "u")
    assert value.profile.summary == "The user wants a loving home for kids." and len(value.user_facts) == 1

    never: list[list[str]] = []
    good = _answer("The user wants a loving home for kids.", ["The user goes to a support group."])
    assert reviewed(good, _pages(), lambda r: never.append(r), lambda **c: None, "u") == good  # type: ignore[func-returns-value]
    assert never == []


def test_a_theme_copied_from_a_turn_is_named_from_its_keywords() -> None:
    from memoryos_workers.pipeline.persona_quality import theme_or_keywords

    said = [t for pair in TURNS for t in pair]
    assert theme_or_keywords("Support groups", ["support"], said) == "Support groups"
    assert theme_or_keywords("LGBTQ support group yesterday", ["lgbtq", "support", "adoption"], said) == (
        "lgbtq support adoption")
    assert theme_or_keywords("a LGBTQ support group", ["went to a LGBTQ support group"], said) == "went to a"
    assert theme_or_keywords("it was so powerful", [], said) == ""


def test_the_segmentation_reader_renames_a_copied_theme() -> None:
    from memoryos_workers.pipeline.answer_schemas import read_segmentation

    answer = {"analysis": {"topics": [{"theme": "Painting looks like a great outlet", "summary": "s",
                                       "keywords": ["painting", "outlet"]}],
                           "pages": [{"topic": 0, "continues_previous": False, "chain_summary": "c"}]}}
    page = _pages()[:1]
    page[0] = page[0].model_copy(update={"agent_response": "Painting looks like a great outlet for you."})
    assert read_segmentation(answer, page).topics[0].theme == "painting outlet"


def test_a_theme_copied_from_what_else_the_call_was_shown_is_renamed() -> None:
    """The real 0.5B model (c9fcd00) named a topic "gender identity and inclusion", 4 words of conv-26's turn
    "Conversations about gender identity and inclusion are so necessary" that was not among the call's pages."""
    from memoryos_workers.pipeline.answer_schemas import read_segmentation
    from memoryos_workers.pipeline.prompts import previous_link
    from memoryos_workers.pipeline.segment_calls import shown_texts

    answer = {"analysis": {"topics": [{"theme": "gender identity and inclusion", "summary": "s",
                                       "keywords": ["talk", "school", "trans"]}],
                           "pages": [{"topic": 0, "continues_previous": True, "chain_summary": "c"}]}}
    said = ("Conversations about gender identity and inclusion are so necessary and I'm thankful for being able "
            "to give a voice.")
    earlier = _pages()[0].model_copy(update={"user_input": said})
    shown = shown_texts(previous_link(earlier, "c"), [])
    assert read_segmentation(answer, _pages()[1:]).topics[0].theme == "gender identity and inclusion"
    assert read_segmentation(answer, _pages()[1:], shown).topics[0].theme == "talk school trans"


def test_a_fact_said_twice_in_one_answer_is_kept_once() -> None:
    got = review(_answer("The user paints.", ["The user paints.", "The user paints!", "I paint."]), _pages(),
                 known=["The user paints landscapes."])  # a fact the call was shown
    assert [f.text for f in got.value.user_facts] == ["The user paints."]
    # "The user paints!" is chat (an exclamation, and nothing else is left of it); "I paint." is said again
    assert got.rejected == 0 and got.chat == 1 and got.near_copies == 1 and not got.needs_retry


def test_a_summary_or_fact_the_turns_do_not_say_is_invented() -> None:
    """What the 0.5B model wrote of a user whose turns say none of it, against restatements of the turns."""
    said = source_stems(t for pair in TURNS for t in pair)
    invented = "The user is a 25-year-old male who struggles with anxiety and depression."
    assert not grounded(invented, said)
    assert unsupported(invented, said) == ["#25", "anxie", "depre", "male", "strug", "year-"]
    assert grounded("The user went to an LGBTQ support group.", said)
    assert grounded("The user's goal is to give kids a loving home.", said)  # a possessive is not a claim
    assert grounded("The user enjoys it.", said)  # frame words and no content: claims nothing
    # Mostly said, but three attributes invented (the 0.5B model's summary of conv-26, a transgender woman):
    career = source_stems(["I've been working on my career in mental health.", "A year ago I started counseling."])
    assert not grounded("The user is a 25-year-old male who has been working in mental health for the past year.",
                        career)
    assert grounded("The user lives in Vancouver.", source_stems(["We finally moved to Vancouver!"]))  # one new word
    summary, dropped = grounded_sentences(f"The user attends a support group. {invented}", said)
    assert (summary, dropped) == ("The user attends a support group.", 1)


def test_a_number_nothing_shown_says_is_invented_whatever_else_is_said() -> None:
    """The real 0.5B model's summary at d8fe291 gave conv-26's user an age ("a 18-year-old"); its only line with
    18 was "my 18th birthday ten years ago", and content stems start with a letter, so the age claimed nothing."""
    said = source_stems(["A friend made it for my 18th birthday ten years ago.",
                         "I've been living with my family and they give me a loving home."])
    assert numbers("my 18th birthday ten years ago, 3.5 km, 1,000 people") == {"#18th", "#10", "#3.5", "#1000"}
    assert not grounded("The user is a 18-year-old who has a loving home.", said)  # "18th" does not say 18
    assert not grounded("The user has been living with family for 3 years.", said)  # one number, all else said
    assert grounded("The user's friend made a bowl for the user's 18th birthday 10 years ago.", said)
    # Memory lends a number as it lends words: a stored fact says it.
    assert grounded("The user has 3 kids.", said, Memory.of(["The user has three kids."]))
    assert not grounded("The user has 4 kids.", said, Memory.of(["The user has three kids."]))


def test_review_drops_invented_facts_and_sentences_without_a_retry() -> None:
    """Invention is dropped and counted, never asked again (a model that invents does so again, and the call's
    cost stays the design's); what the call was shown besides the pages (`known`) may be restated."""
    answer = _answer("The user goes to a support group. The user owns a red sports car.",
                     ["The user went to a support group.", "The user has a dog named Rex.",
                      "The user works as a nurse in Lisbon."])
    out = review(answer, _pages())
    assert out.value.profile.summary == "The user goes to a support group."
    assert [f.text for f in out.value.user_facts] == ["The user went to a support group."]
    assert (out.invented_facts, out.invented_sentences, out.rejected, out.needs_retry) == (2, 1, 0, False)
    shown = review(answer, _pages(), known=["The user works as a nurse in Lisbon."])
    assert [f.text for f in shown.value.user_facts] == ["The user went to a support group.",
                                                        "The user works as a nurse in Lisbon."]


def test_an_assistant_fact_must_come_from_the_assistants_own_lines() -> None:
    """The 0.5B model credited a user's line to the assistant: as an assistant fact it is invented (the
    assistant never said it), while the same text as a user fact and the assistant's own line both pass."""
    answer = _answer("", ["The user went to an LGBTQ support group."],
                     assistant=("The assistant went to an LGBTQ support group.",
                                "The assistant is happy for the user and Sam."))
    out = review(answer, _pages())
    assert [f.text for f in out.value.user_facts] == ["The user went to an LGBTQ support group."]
    assert [f.text for f in out.value.assistant_facts] == ["The assistant is happy for the user and Sam."]
    assert out.invented_facts == 1 and not out.needs_retry


def test_what_the_call_was_shown_about_the_user_does_not_ground_an_assistant_fact() -> None:
    """Seen with the real 0.5B model: a shown user fact, and the profile's words, restated as assistant facts
    passed because the shown texts counted for both speakers. Only shown assistant facts ground those."""
    about_user = ["The user has been looking into counseling and mental health as a career.",
                  "The user wants to support family with similar issues."]
    answer = _answer("", [], assistant=("The assistant has been looking into counseling and mental health as a "
                                        "career.", "The assistant committed to supporting family with similar issues."))
    out = review(answer, _pages(), known=about_user)
    assert out.value.assistant_facts == [] and out.invented_facts == 2
    kept = review(answer, _pages(), known=about_user, assistant_known=["The assistant supports family with similar "
                                                                       "issues."])
    assert [f.text for f in kept.value.assistant_facts] == ["The assistant committed to supporting family with "
                                                            "similar issues."]


def test_a_fact_about_the_user_in_the_assistants_list_is_rejected() -> None:
    """The real 0.5B model wrote user facts into the assistant's list ("Lately, the user has been ..."); they
    would stand as the assistant's facts and beside the same user fact."""
    answer = _answer("", ["The user went to an LGBTQ support group."],
                     assistant=("The user went to an LGBTQ support group.",
                                "Lately, the user went to an LGBTQ support group.",
                                "The assistant is happy for the user and Sam."))
    out = review(answer, _pages(), assistant_known=["The user went to an LGBTQ support group."])
    assert [f.text for f in out.value.assistant_facts] == ["The assistant is happy for the user and Sam."]
    assert [f.text for f in out.value.user_facts] == ["The user went to an LGBTQ support group."]
    assert out.rejected == 2


# -- issue 21: what the real 0.5B model stored for conv-26 (bench/results/real_llm_check.json, facts_all) ---------
# Caroline is a transgender woman; the model wrote "he". Each string below was stored as a user fact.

STORED_WENT = "The user said that he went to a LGBTQ support group yesterday and it was so powerful."
STORED_LUCKY = ("The user is so lucky to have such a great support system around the user. Their love and "
                "encouragement has really helped the user accept and grow into the user's true self. They've been "
                "instrumental in the user's transition.")
STORED_STRUGGLED = ("The user said that he struggled with mental health, and support the user got was really helpful. "
                    "It made the user realize how important it is for others to have a support system. So, the user "
                    "started looking into")
STORED_NICOLE = ("The user said that he loved \"Becoming Nicole\" by Amy Ellis Nutt. It's a real inspiring true story "
                 "about a trans girl and her family. It made the user feel connected and gave the user a lot of hope "
                 "for the user's own path")
STORED_STRUGGLED_SHORTER = ("The user said that he struggled with mental health, and support the user got was really "
                            "helpful. It made the user realize how important it is for others to have a support "
                            "system. So, the user started")
STORED_MENTEE = ("Seeing the user's mentee's face light up when they saw the support was the best! Such a special "
                 "moment.")
STORED = [STORED_WENT, STORED_LUCKY, STORED_STRUGGLED, STORED_NICOLE, STORED_STRUGGLED_SHORTER, STORED_MENTEE]
STRUGGLED = ("The user struggled with mental health, and support the user got was really helpful. It made the user "
             "realize how important it is for others to have a support system.")


def test_the_reporting_frame_is_removed_and_its_pronoun_with_it() -> None:
    from memoryos_workers.pipeline.fact_form import is_reported, strip_frame

    assert strip_frame(STORED_WENT) == ("The user went to a LGBTQ support group yesterday and it was so "
                                        "powerful.")
    assert strip_frame(STORED_NICOLE).startswith('The user loved "Becoming Nicole" by Amy Ellis Nutt. ')  # tense kept
    assert strip_frame("The user told Melanie that she adopted a cat.") == "The user adopted a cat."
    assert strip_frame("The user mentioned they are a counselor.") == "The user is a counselor."
    assert strip_frame("The user said he's been painting for years.") == "The user has been painting for years."
    assert strip_frame("The user said they've moved.") == "The user has moved."
    assert strip_frame("The user said she's a nurse.") == "The user is a nurse."
    assert strip_frame("The user said they struggled.") == "The user struggled."
    assert strip_frame("The assistant said that it will send the list.") == "The assistant will send the list."
    assert strip_frame("The assistant said the assistant will call.") == "The assistant will call."
    assert strip_frame("The assistant said that the user paints.") == "The assistant said that the user paints."
    assert strip_frame("The user said it was fun.") == "The user said it was fun."
    assert strip_frame("The user told the user's mom she paints.") == "The user told the user's mom she paints."
    # not safe, left as written: "they built" is no "builts"; "he'd" is had or would; the group is not the user
    for kept in ("The user said they built a shed.", "The user said he'd moved.", "The user said he's moved.",
                 "The user said they need a car.",
                 "The user said that the group was powerful."):
        assert strip_frame(kept) == kept
    assert all(is_reported(f) for f in (STORED_WENT, STORED_NICOLE, STORED_STRUGGLED, "Caroline told Mel she paints."))
    assert all(is_reported(f) for f in ("The user said: I love it", "The user mentioned to Melanie that she paints.",
                                         'The assistant said "hi"', "The user said it was fun."))
    assert not any(is_reported(f) for f in (STORED_LUCKY, STORED_MENTEE, "The user adopted a cat.",
                                            "The user shares a flat with Mel.", "The user notes everything down.",
                                            "The user told Melanie about her cat."))


def test_a_fact_keeps_its_whole_sentences_and_at_most_two() -> None:
    from memoryos_workers.pipeline.fact_form import cut_mid_sentence, sentences, shape

    assert cut_mid_sentence(STORED_STRUGGLED) and cut_mid_sentence(STORED_NICOLE)
    assert not cut_mid_sentence(STORED_LUCKY) and not cut_mid_sentence("The user has a cat named Max")
    assert shape(STORED_STRUGGLED) == (STRUGGLED, False)
    assert shape(STORED_STRUGGLED_SHORTER) == (STRUGGLED, False)
    assert shape(STORED_NICOLE) == ('The user loved "Becoming Nicole" by Amy Ellis Nutt. It\'s a real inspiring true '
                                    "story about a trans girl and her family.", False)
    assert shape(STORED_LUCKY) == ("The user is so lucky to have such a great support system around the user. Their "
                                   "love and encouragement has really helped the user accept and grow into the "
                                   "user's true self.", False)
    assert sentences('Dr. J. Smith said "hi." The user went.') == ['Dr. J. Smith said "hi."', "The user went."]
    # one sentence longer than the cap (a server that does not enforce maxLength): cut at a word, none broken
    assert shape("The user owns " + "very " * 50 + "old boats.", cap=30) == ("The user owns very very very", False)
    assert shape("The user owns a boat. The user rows.", cap=25) == ("The user owns a boat.", False)


def test_an_exclamation_is_chat_and_what_is_left_must_name_its_subject() -> None:
    from memoryos_workers.pipeline.fact_form import shape

    assert shape(STORED_MENTEE) == ("Such a special moment.", True)
    assert shape("The user adopted a cat in May. Best day ever!") == ("The user adopted a cat in May.", True)
    got = review(_answer("The user paints.", [STORED_MENTEE, "The user adopted a cat in May. So cute!"]),
                 _pages()[:0] + [_page("I adopted a cat in May. Seeing my mentee's face light up when they saw the "
                                       "support was the best! Such a special moment.")])
    assert [f.text for f in got.value.user_facts] == ["The user adopted a cat in May."]
    assert got.chat == 1 and got.rejected == 0 and got.repaired == 1


def _page(user: str) -> Page:
    return Page(user_id="u", turn_id="t9", seq=9, user_input=user, agent_response="Nice.",
                timestamp=datetime(2023, 5, 8, tzinfo=timezone.utc))


def test_near_copies_are_one_fact() -> None:
    from memoryos_workers.pipeline.fact_form import near_copies, near_copy

    assert near_copies(STORED) == [(STORED_STRUGGLED, STORED_STRUGGLED_SHORTER)]
    assert near_copy("The user has a cat", "The user has a cat named Max.")  # the start of the other
    assert not near_copy("The user lives in Berlin.", "The user lives in Paris.")
    assert not near_copy("The user adopted a cat named Max in May.", "The user adopted a cat named Max in June.")


def test_the_stored_facts_reviewed() -> None:
    """The model's answer as stored, through the post-check: no reported line, no near copy, no cut sentence,
    no "he" for the user (the frame's pronoun was the only one), the chat line rejected."""
    from memoryos_workers.pipeline.fact_form import cut_mid_sentence, is_reported, near_copies

    turns = " ".join(STORED).replace("the user", "I")
    got = review(_answer("The user paints.", STORED), [_page(turns)])
    texts = [f.text for f in got.value.user_facts]
    assert texts == [
        "The user went to a LGBTQ support group yesterday and it was so powerful.",
        STORED_LUCKY.rsplit(" They've", 1)[0],
        STRUGGLED,
        'The user loved "Becoming Nicole" by Amy Ellis Nutt. It\'s a real inspiring true story about a trans girl '
        "and her family.",
    ]
    assert got.chat == 1 and got.rejected == 0 and got.near_copies == 1 and got.repaired == 4
    assert not got.needs_retry
    assert not any(is_reported(t) or cut_mid_sentence(t) for t in texts) and not near_copies(texts)
    assert not any(" he " in f" {t} " for t in texts)


def test_a_near_copy_of_a_shown_fact_is_that_fact() -> None:
    """Said again in other words, a fact the call was shown keeps its text, so the store confirms it
    (PersonaStore.add_facts: an identical text is its own nearest neighbour) instead of adding a second."""
    shown = STRUGGLED + " So, the user started looking into counseling."
    got = review(_answer("The user paints.", [STORED_STRUGGLED_SHORTER]), [_page(STRUGGLED.replace("the user", "I"))],
                 known=[shown], known_facts=[shown])
    assert [f.text for f in got.value.user_facts] == [shown] and got.near_copies == 1
    # a shown profile summary is no fact to confirm: only `known_facts` are
    got = review(_answer("The user paints.", [STORED_STRUGGLED_SHORTER]), [_page(STRUGGLED.replace("the user", "I"))],
                 known=[shown])
    assert [f.text for f in got.value.user_facts] == [STRUGGLED] and got.near_copies == 0


def test_exclamations_are_dropped_without_a_retry() -> None:
    """The test model's "The user said: <line>" facts are mostly exclamations: dropped as chat, they must not
    make a retry (bench llm_cost: 13.5 calls per 100 promoted turns when they counted as rejected)."""
    lines = ["The user said: Hey Mel! Good to see you!", "The user said: Wow! So cool!", "The user said: Yay!"]
    got = review(_answer("The user paints.", lines), _pages())
    assert got.value.user_facts == [] and got.chat == 3 and got.rejected == 0 and not got.needs_retry


def test_topics_of_one_answer_named_alike_are_one_topic() -> None:
    """The 0.5B model's first conv-26 batch: 4 topics, two pairs named alike, stored as 4 segments."""
    from memoryos_workers.pipeline.answer_schemas import read_segmentation

    topic = [{"theme": t, "summary": s, "keywords": k} for t, s, k in [
        ("Painting colors blend", "Painting.", ["painting"]), ("relaxation", "Swims.", ["swimming"]),
        ("painting  colors blend", "Colours.", ["colors"]), ("Relaxation", "Swims.", ["swimming", "relax"])]]
    answer = {"analysis": {"topics": topic, "pages": [
        {"topic": n, "continues_previous": False, "chain_summary": "c"} for n in (0, 1, 2, 3, 0)]}}
    pages = [_page(f"line {i}").model_copy(update={"turn_id": f"t{i}", "seq": i}) for i in range(5)]
    read = read_segmentation(answer, pages)
    assert [(t.theme, t.summary, t.keywords, t.page_indices) for t in read.topics] == [
        ("Painting colors blend", "Painting. Colours.", ["painting", "colors"], [0, 2, 4]),
        ("relaxation", "Swims.", ["swimming", "relax"], [1, 3])]


def test_a_repaired_sentence_is_not_cut_by_the_post_check() -> None:
    """A first-person sentence just under the schema's cap grows when said in the third person: kept whole."""
    from memoryos_workers.pipeline.fact_form import FACT_CHARS, shape

    said = ("I told my mom that I paint, that I sketch, that I sculpt, that I carve and that I weave at the "
            "community arts centre near the old harbour every single weekday morning before work starts.")
    assert len(said) <= FACT_CHARS
    fixed = repair_fact(said, "The user")
    assert fixed is not None and len(fixed) > FACT_CHARS and shape(fixed) == (fixed, False)


def test_a_reply_of_agreement_is_chat_not_a_fact() -> None:
    """The user fact the 0.5B model stored at b5e8b6e (bench/results/real_llm_check.json): a line of the user's
    reply to the assistant, with "ourselves" for its subject."""
    stored = "Totally agree, Melanie. Relaxing and expressing ourselves is key."
    assert fact_without_subject(stored)
    assert repair_fact(stored, "The user") is None
    assert fact_without_subject("Relaxing and expressing ourselves is key.")
    assert not fact_without_subject("The user agrees that relaxing and expressing oneself is key.")
    assert not fact_without_subject("The user paints to relax.")

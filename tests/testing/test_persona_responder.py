"""The measurable test model: its persona answers derive from the pages, through the real pipeline.

Why: benchmarks measure what the persona adds to a prompt only if the test model's persona says
something the pages said; a summary of keywords or a fact that is a verbatim turn would measure nothing.
"""

from __future__ import annotations

import pytest

from memoryos_workers.pipeline.answer_schemas import persona_schema, read_persona
from memoryos_workers.testing.persona_responder import persona_answer, statements, third_person

STORY = [
    ("Hey! How are you doing today?", "Good, thanks!"),
    ("I moved to Berlin last month for a new job.", "Congratulations on the move!"),
    ("My new job is as a UX designer at a small studio.", "That sounds exciting."),
    ("I adopted a cat called Pimenta from the shelter.", "What a lovely name."),
    ("lol yes", "Ha!"),
    ("Did you watch anything good?", "Not really."),
]


def test_first_person_statements_become_facts_about_the_user() -> None:
    assert third_person("My cat is called Pimenta") == "The user's cat is called Pimenta."
    assert third_person("I'm moving to Berlin next month!") == "The user is moving to Berlin next month."
    assert third_person("I can book flights", "The assistant") == "The assistant can book flights."
    # Questions, small talk and sentences without a first-person subject state no fact.
    assert statements("Hey Mel! Did you go? It rained all day. I went to a support group yesterday.") == [
        "I went to a support group yesterday."]


def test_answer_fits_the_schema_and_restates_the_pages() -> None:
    pages = [{"index": i, "time": f"2023-05-0{i + 1}T10:00:00", "user": u, "assistant": a}
             for i, (u, a) in enumerate(STORY)]
    schema = persona_schema(len(pages))
    request = {"response_format": {"json_schema": {"name": "persona", "schema": schema}}}
    answer = persona_answer({"current_profile": None, "pages": pages}, request)
    value = read_persona(answer)
    assert value is not None
    texts = [f.text for f in value.user_facts]
    assert texts == ["The user moved to Berlin last month for a new job.",
                     "The user's new job is as a UX designer at a small studio.",
                     "The user adopted a cat called Pimenta from the shelter."]
    assert [f.date for f in value.user_facts] == ["2023-05-02", "2023-05-03", "2023-05-04"]
    summary = value.profile.summary
    assert summary.startswith("The user") and "Berlin" in summary and "Pimenta" in summary
    assert all(summary != u for u, _ in STORY)
    # A field a schema adds later is filled with a value the schema allows; one it lacks is dropped.
    schema["properties"]["user_facts"]["items"]["properties"]["valid_until"] = {"type": "string"}
    schema["properties"]["user_facts"]["items"]["required"].append("valid_until")
    grown = persona_answer({"current_profile": None, "pages": pages}, request)
    fields = set(schema["properties"]["user_facts"]["items"]["properties"])
    assert {"text", "date", "valid_until"} <= fields
    assert all(set(f) == fields for f in grown["user_facts"])


def test_summary_keeps_its_size_round_after_round() -> None:
    current = {"summary": "", "traits": []}
    for round_ in range(20):
        pages = [{"index": 0, "time": "2023-05-01T10:00:00",
                  "user": f"I finished reading book number {round_} about the history of sailing ships.",
                  "assistant": ""}]
        answer = persona_answer({"current_profile": current, "pages": pages})
        current = answer["profile"]
    assert len(current["summary"]) <= 480 and "number 19" in current["summary"]


@pytest.mark.integration
def test_pipeline_stores_facts_that_name_the_user(private_runtime, fake_llm) -> None:  # noqa: ANN001
    from memoryos_workers.testing.persona_responder import persona_responder

    fake_llm.responder = persona_responder
    rt = private_runtime(short_term_capacity=1, promotion_batch_size=10)
    user = "persona-responder-user"
    turns = [{"user_id": user, "user_input": u, "agent_response": a} for u, a in STORY * 2]
    rt.publisher.publish_many(turns)
    rt.pending.check(user, force=True)
    rt.promoter.run(user)
    rt.persona_worker.extract(user, force=True)
    profile = rt.persona.get_profile(user)
    assert profile is not None and "Berlin" in profile.summary and profile.summary.startswith("The user")
    facts = [f.text for f in rt.persona.list("user", user)]
    assert facts and all(f.startswith("The user") for f in facts)
    assert any("Pimenta" in f for f in facts) and not any("How are you" in f for f in facts)

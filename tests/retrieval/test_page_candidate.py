"""A retrieval's page candidate becomes the same `RetrievedPage` the validated path builds, and its stored
timestamp parses (once per string) to what the model's validation gives."""

from __future__ import annotations

from producers.context.parts import PageCandidate, RetrievedPage


def _candidate() -> PageCandidate:
    return PageCandidate(
        turn_id="u-t1", user_input="I planted tomatoes.", agent_response="Nice!",
        timestamp=PageCandidate.parse_time("2024-05-01T10:00:00+02:00"), metadata={"k": 1}, score=0.5,
        segment_id="s1", segment_summary="Gardening.", chain_summary="A chain.", seq=1, theme="garden",
        found_by=["dense", "bm25"],
    )


def test_a_kept_page_is_the_model_model_construct_builds() -> None:
    c = _candidate()
    fast = c.page("", None)
    slow = RetrievedPage.model_construct(
        turn_id=c.turn_id, user_input=c.user_input, agent_response=c.agent_response, timestamp=c.timestamp,
        metadata=c.metadata, score=c.score, segment_id=c.segment_id, segment_summary="",
        chain_summary=c.chain_summary, seq=c.seq, theme=c.theme, found_by=c.found_by)
    assert fast == slow
    assert fast.model_fields_set == slow.model_fields_set == set(RetrievedPage.model_fields)
    assert fast.model_dump_json() == slow.model_dump_json()
    assert list(fast.__dict__) == list(slow.__dict__)
    assert fast.__pydantic_extra__ is slow.__pydantic_extra__ is None
    assert fast.__pydantic_private__ is slow.__pydantic_private__ is None
    assert fast.model_copy(update={"score": 1.0}).score == 1.0


def test_a_stored_timestamp_parses_as_the_model_validates_it_and_once_per_string() -> None:
    stamp = "2024-05-01T10:00:00Z"
    parsed = PageCandidate.parse_time(stamp)
    assert parsed == RetrievedPage.model_validate(
        {"turn_id": "t", "user_input": "", "agent_response": "", "timestamp": stamp}).timestamp
    assert PageCandidate.parse_time(stamp) is parsed
    assert parsed.tzname() == "UTC"

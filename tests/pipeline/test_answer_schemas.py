"""The per-call answer schemas against their readers: anything a schema allows is read whole (a server that
enforces the schema can only send answers we use), and any cut or broken answer is read for its valid part
without raising. Instances are drawn by hypothesis from the schema itself (a small strategy for the subset
the builders emit), so a builder that allowed more than its reader accepts would be caught."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memoryos_workers.pipeline.answer_schemas import (
    MAX_TOPIC_KEYWORDS,
    parse_partial,
    persona_limits,
    persona_schema,
    read_persona,
    read_segmentation,
    segmentation_schema,
)
from memoryos_workers.pipeline.segmentation import (
    check_segmentation,
    combine,
    from_read,
    normalise,
    split_by_batch,
)
from memoryos_workers.testing.fake_llm import generate_from_schema
from schemas.memory import MAX_TOPICS
from schemas.turns import Page

T0 = datetime(2025, 5, 1, 9, 30, tzinfo=timezone.utc)
KEYWORDS = {"anyOf", "enum", "type", "properties", "required", "additionalProperties", "items", "minItems",
            "maxItems", "maxLength"}


def pages(n: int) -> list[Page]:
    return [
        Page(seq=i + 1, user_id="u1", turn_id=f"t{i}", user_input=f"I went hiking in Sintra on day {i}",
             agent_response=f"Sintra trails are lovely ({i})", timestamp=T0 + timedelta(minutes=i))
        for i in range(n)
    ]


def instances(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Every JSON value the schema allows, for the keywords the builders use (and only those: a builder that
    starts using another keyword fails here until the strategy learns it)."""
    unknown = set(schema) - KEYWORDS
    assert not unknown, f"the strategy does not know {unknown}"
    if "anyOf" in schema:
        return st.one_of([instances(branch) for branch in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema["type"]
    if kind == "object":
        assert schema["additionalProperties"] is False and set(schema["required"]) == set(schema["properties"])
        return st.fixed_dictionaries({name: instances(sub) for name, sub in schema["properties"].items()})
    if kind == "array":
        return st.lists(instances(schema["items"]), min_size=schema["minItems"], max_size=schema["maxItems"])
    if kind == "string":
        return st.text(max_size=min(40, schema.get("maxLength", 40)))
    if kind == "boolean":
        return st.booleans()
    raise AssertionError(f"unexpected schema type {kind!r}")


@st.composite
def segmentation_answers(draw: st.DrawFn) -> tuple[int, Any]:
    n = draw(st.integers(min_value=1, max_value=25))
    return n, draw(instances(segmentation_schema(n)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segmentation_answers())
def test_every_answer_the_segmentation_schema_allows_is_read_whole(case: tuple[int, Any]) -> None:
    n, answer = case
    jsonschema.validate(answer, segmentation_schema(n))  # the strategy draws only what the schema allows
    read = read_segmentation(answer, pages(n))
    assert read.complete, read.problems
    result = normalise(from_read(read, pages(n)))
    check_segmentation(result, n)  # each page in exactly one topic, 1..MAX_TOPICS topics, summaries set
    assert all(p.source == "llm" for p in result.pages) and all(t.source == "llm" for t in result.topics)
    assert all(t.theme.strip() and len(t.keywords) <= MAX_TOPIC_KEYWORDS for t in result.topics)
    said = [p["continues_previous"] for p in answer["analysis"]["pages"]]
    assert [p.continues_previous for p in result.pages] == said


@settings(max_examples=200, deadline=None)
@given(segmentation_answers(), st.data())
def test_a_cut_answer_keeps_its_whole_part_and_the_rest_is_filled(case: tuple[int, Any], data: st.DataObject) -> None:
    import json

    n, answer = case
    text = json.dumps(answer)
    cut = text[: data.draw(st.integers(min_value=0, max_value=len(text)))]
    read = read_segmentation(parse_partial(cut), pages(n))
    whole = read_segmentation(answer, pages(n))
    for index, analysis in read.pages.items():  # what is read of a cut answer is what the whole answer says
        assert analysis.continues_previous == whole.pages[index].continues_previous
    result = from_read(read, pages(n))
    check_segmentation(result, n, max_topics=None)
    assert sorted(p.index for p in result.pages if p.source == "fallback") == read.missing


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=12), st.recursive(
    st.none() | st.booleans() | st.integers(-3, 8) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(
        st.sampled_from(["analysis", "topics", "pages", "topic", "theme", "summary", "keywords",
                         "continues_previous", "chain_summary"]), inner, max_size=5),
    max_leaves=40))
def test_any_json_is_read_without_raising(n: int, raw: Any) -> None:
    read = read_segmentation(raw, pages(n))
    check_segmentation(from_read(read, pages(n)), n, max_topics=None)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=60), st.sampled_from([512, 1024, 2048, 8192]), st.data())
def test_every_answer_the_persona_schema_allows_is_read_whole(n: int, budget: int, data: st.DataObject) -> None:
    shown = [f"F{i}" for i in range(1, data.draw(st.integers(0, 4)) + 1)]
    schema = persona_schema(n, budget, shown)
    answer = data.draw(instances(schema))
    value = read_persona(answer)
    assert value is not None
    dumped = value.model_dump()
    for fact in dumped["assistant_facts"]:  # the links are user facts' only
        assert fact.pop("page") is None and fact.pop("supersedes") == fact.pop("confirms") == []
        assert fact.pop("quote") == ""
    assert dumped == answer
    assert all(set(f.supersedes) <= set(shown) for f in value.user_facts) and set(value.retired) <= set(shown)
    user_facts, assistant_facts = persona_limits(n, budget)
    assert len(value.user_facts) <= user_facts and len(value.assistant_facts) <= assistant_facts


def test_persona_reader_keeps_whole_facts_of_a_cut_answer() -> None:
    text = ('{"profile": {"summary": "Maya hikes.", "traits": [{"dimension": "interest: hiking", "level": "high", '
            '"evidence": "She hikes."}]}, "user_facts": [{"text": "Maya hikes in Sintra.", "date": ""}, {"text": "Ma')
    value = read_persona(parse_partial(text))
    assert value is not None and value.profile.summary == "Maya hikes." and len(value.profile.traits) == 1
    assert [f.text for f in value.user_facts] == ["Maya hikes in Sintra."] and value.assistant_facts == []
    assert read_persona(parse_partial('{"profile": {"summary": "Maya hi')) is None, "no whole profile: not used"
    assert read_persona("not an object") is None


def test_persona_links_of_the_wrong_type_drop_the_link_not_the_fact() -> None:
    raw = {"profile": {"summary": "s", "traits": []}, "retired": ["F1", 3],
           "user_facts": [{"text": "Lea lives in Berlin.", "date": "", "page": True, "supersedes": "F1",
                           "confirms": ["F2", None]}, "junk"], "assistant_facts": None}
    value = read_persona(raw)
    assert value is not None and value.retired == ["F1"] and value.assistant_facts == []
    [fact] = value.user_facts
    assert (fact.text, fact.page, fact.supersedes, fact.confirms) == ("Lea lives in Berlin.", None, [], ["F2"])


def test_persona_schema_names_only_the_shown_facts() -> None:
    schema = persona_schema(3, 2048, ["F1", "F2"])
    fact = schema["properties"]["user_facts"]["items"]
    assert fact["properties"]["supersedes"]["items"]["enum"] == ["F1", "F2"]
    assert schema["properties"]["retired"]["items"]["enum"] == ["F1", "F2"]
    assert fact["properties"]["page"]["enum"] == [0, 1, 2]
    none_shown = persona_schema(3, 2048)
    assert none_shown["properties"]["retired"]["maxItems"] == 0


@pytest.mark.parametrize("n", [1, 2, 3, 4, 10, 40])
def test_schema_shapes_are_exactly_as_long_as_the_call(n: int) -> None:
    schema = segmentation_schema(n)
    branches = schema["properties"]["analysis"]["anyOf"]
    assert len(branches) == min(n, MAX_TOPICS)
    for k, branch in enumerate(branches, start=1):
        topics, page_list = branch["properties"]["topics"], branch["properties"]["pages"]
        assert topics["minItems"] == topics["maxItems"] == k
        assert page_list["minItems"] == page_list["maxItems"] == n
        assert page_list["items"]["properties"]["topic"]["enum"] == list(range(k))
        assert list(branch["properties"]) == ["topics", "pages"], "topics first: pages name what was described"
    # What the fake's generic mode sends for it is read whole too.
    assert read_segmentation(generate_from_schema(schema), pages(n)).complete
    with pytest.raises(ValueError):
        segmentation_schema(0)


def test_partly_valid_answers_report_exactly_what_is_missing() -> None:
    topic = {"theme": "Hiking", "summary": "The user hikes.", "keywords": ["hiking"]}
    page = {"topic": 0, "continues_previous": False, "chain_summary": "c"}
    answer = {"analysis": {"topics": [topic], "pages": [page, {**page, "topic": 1}, {"topic": 0}, page, "x"]}}
    read = read_segmentation(answer, pages(6))
    assert read.missing == [1, 2, 4, 5]
    assert [t.page_indices for t in read.topics] == [[0, 3]]
    assert any("5 page analyses for 6 pages" in p for p in read.problems)
    filled = from_read(read, pages(6))
    assert [p.source for p in filled.pages] == ["llm", "fallback", "fallback", "llm", "fallback", "fallback"]
    assert [t.page_indices for t in filled.topics] == [[0, 3], [1, 2, 4, 5]]
    # Blank strings the schema cannot forbid are filled from the topic's own pages, not refused.
    blank = {"analysis": {"topics": [{"theme": " ", "summary": "", "keywords": []}], "pages": [page]}}
    (topic_read,) = read_segmentation(blank, pages(1)).topics
    assert topic_read.keywords and topic_read.theme.strip() and "I went hiking in Sintra" in topic_read.summary


def test_backlog_analysis_splits_back_into_batches() -> None:
    first = from_read(read_segmentation({"analysis": {
        "topics": [{"theme": "A", "summary": "a", "keywords": []}, {"theme": "B", "summary": "b", "keywords": []}],
        "pages": [{"topic": i % 2, "continues_previous": True, "chain_summary": f"c{i}"} for i in range(7)],
    }}, pages(7)), pages(7))
    whole = combine([(0, first)])
    parts = split_by_batch(whole, [3, 4])
    assert [len(p.pages) for p in parts] == [3, 4]
    assert [t.page_indices for t in parts[0].topics] == [[0, 2], [1]]
    assert [t.page_indices for t in parts[1].topics] == [[1, 3], [0, 2]]
    assert [p.chain_summary for p in parts[1].pages] == ["c3", "c4", "c5", "c6"]
    for part, size in zip(parts, [3, 4], strict=True):
        check_segmentation(part, size)

"""The fake LLM's knobs for a real model's limits, through the real ``openai`` client over real HTTP:
streamed answers (paced, with or without usage, stalled), truncation, a context window, and the
generic mode that answers any schema with arbitrary valid JSON.

Why: the LLM client's streaming and limit tests, and the pipeline's, trust these knobs; a stream the
real client could not parse, or a "generic" answer outside its schema, would make them prove nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from pydantic import BaseModel, Field

from memoryos_workers.llm.client import response_schema
from memoryos_workers.testing.fake_llm import DEFAULT_TEXT_ANSWER, FakeLLM, random_from_schema

MESSAGES: list[Any] = [{"role": "user", "content": "We talked about the weather in Paris and about cats."}]


class Page(BaseModel):
    index: int = Field(ge=0, le=9)
    topic: int = Field(ge=1, le=4)
    keywords: list[str] = Field(min_length=1, max_length=5)
    mood: str | None
    kind: str = Field(json_schema_extra={"enum": ["chat", "fact", "plan"]})
    score: float = Field(ge=0, le=1)
    continues: bool


class Batch(BaseModel):
    pages: list[Page] = Field(min_length=2, max_length=10)
    title: str = Field(min_length=3, max_length=40)


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture
def client(llm: FakeLLM) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=llm.base_url, api_key="test", max_retries=0, timeout=5.0) as c:
        yield c


def collect(stream: Any) -> tuple[str, list[Any]]:
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


# -- streaming -------------------------------------------------------------------------------------


def test_a_streamed_answer_ends_with_its_usage_when_asked(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.text_answer = "word " * 200
    text, chunks = collect(client.chat.completions.create(
        model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    assert text == "word " * 200 and len(chunks) > 3
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 250
    assert all(c.usage is None for c in chunks[:-1])

    text, chunks = collect(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert text == "word " * 200 and chunks[-1].usage is None, "no usage unless the request asks"
    llm.stream_usage = False  # llama.cpp's server sends none even when asked
    text, chunks = collect(client.chat.completions.create(
        model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    assert all(c.usage is None for c in chunks) and chunks[-1].choices[0].finish_reason == "stop"
    assert llm.successes == 3 and llm.completion_tokens == 750


def test_a_paced_stream_sends_one_token_at_a_time(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.text_answer = "abcd" * 30  # 30 tokens
    llm.stream_tokens_per_s = 50
    started = time.monotonic()
    arrivals = []
    for chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
        arrivals.append(time.monotonic() - started)
        assert not chunk.choices or len(chunk.choices[0].delta.content or "") <= 4
    assert 0.5 <= arrivals[-1] < 1.5, "30 tokens at 50 tokens/s"
    assert arrivals[0] < 0.2, "the first token comes at once, the rest one by one"

    started = time.monotonic()
    whole = client.chat.completions.create(model="m", messages=MESSAGES)
    assert whole.choices[0].message.content == "abcd" * 30
    assert time.monotonic() - started >= 0.5, "a whole answer comes once all of it is generated"


def test_a_stalled_stream_goes_silent_until_the_client_gives_up(llm: FakeLLM) -> None:
    llm.text_answer = "abcd" * 30
    llm.stall_after_tokens = 5
    received = []
    started = time.monotonic()
    with openai.OpenAI(base_url=llm.base_url, api_key="k", max_retries=0, timeout=openai.Timeout(5, read=0.5)) as c:
        with pytest.raises(openai.APITimeoutError):
            for chunk in c.chat.completions.create(model="m", messages=MESSAGES, stream=True):
                received.append(chunk.choices[0].delta.content)
    assert "".join(received) == "abcd" * 5
    assert 0.5 <= time.monotonic() - started < 2
    time.sleep(0.2)
    llm.stall_after_tokens = None
    assert llm.client().chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content


def test_truncation_cuts_the_answer_with_finish_reason_length(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.text_answer = "abcd" * 30
    llm.truncate_at_tokens = 7
    whole = client.chat.completions.create(model="m", messages=MESSAGES)
    assert whole.choices[0].message.content == "abcd" * 7 and whole.choices[0].finish_reason == "length"
    assert whole.usage is not None and whole.usage.completion_tokens == 7
    text, chunks = collect(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert text == "abcd" * 7 and chunks[-1].choices[0].finish_reason == "length"


def test_endpoint_quirks(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.reject_stream_options = True
    with pytest.raises(openai.BadRequestError, match="stream_options"):
        client.chat.completions.create(model="m", messages=MESSAGES, stream=True,
                                       stream_options={"include_usage": True})
    llm.ignore_stream = True
    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    assert stream.response.headers["content-type"].startswith("application/json")
    stream.close()
    assert llm.faults["bad_request"] == 1


# -- context window --------------------------------------------------------------------------------


def test_a_prompt_over_the_context_window_is_refused_like_openai(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.context_tokens = 10  # the message is 13 tokens by the fake's count
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert excinfo.value.code == "context_length_exceeded"
    assert "maximum context length is 10 tokens" in str(excinfo.value) and "resulted in 13 tokens" in str(excinfo.value)
    assert llm.faults["context_length"] == 1 and llm.successes == 0
    llm.context_tokens = 13
    assert client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content


# -- generic answers -------------------------------------------------------------------------------


def ask_generic(client: openai.OpenAI, model: type[BaseModel]) -> str:
    fmt = {"type": "json_schema", "json_schema": {"name": model.__name__, "schema": response_schema(model),
                                                  "strict": True}}
    return client.chat.completions.create(model="m", messages=MESSAGES, response_format=fmt).choices[0].message.content


def test_generic_answers_are_valid_and_vary_within_the_schema(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.generic = True
    llm.responder = lambda request: {"not": "used"}  # generic answers ignore the responder
    answers = [Batch.model_validate_json(ask_generic(client, Batch)) for _ in range(40)]

    lengths = {len(a.pages) for a in answers}
    assert min(lengths) == 2 and max(lengths) == 10 and len(lengths) >= 6, lengths
    pages = [p for a in answers for p in a.pages]
    assert {p.topic for p in pages} == {1, 2, 3, 4} and {p.kind for p in pages} == {"chat", "fact", "plan"}
    assert {p.continues for p in pages} == {True, False} and {p.mood is None for p in pages} == {True, False}
    assert {len(p.keywords) for p in pages} == {1, 2, 3, 4, 5}
    assert len({p.index for p in pages}) == 10 and len({a.title for a in answers}) > 30

    llm.reset()
    assert Batch.model_validate_json(ask_generic(client, Batch)) == answers[0], "re-seeded: the same answers"


@pytest.mark.parametrize("seed", range(20))
def test_random_instances_validate_for_the_edge_cases_of_pydantic_schemas(seed: int) -> None:
    import random

    from tests.testing.test_fake_llm import Edgy, TopicList

    for model in (Edgy, TopicList, Batch):
        instance = random_from_schema(model.model_json_schema(), random.Random(seed))
        model.model_validate_json(json.dumps(instance))


def test_text_answers_are_unchanged_by_generic_mode(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.generic = True
    llm.responder = None
    assert client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content == (
        DEFAULT_TEXT_ANSWER
    )


def test_generic_answers_use_the_freedom_a_loose_schema_leaves() -> None:
    """What the schema does not forbid, a schema-enforcing server may answer: negative numbers where no
    minimum is set, empty strings where no minLength is, long arrays where no maxItems is."""
    import random

    class Loose(BaseModel):
        index: int
        note: str
        tags: list[str]

    rng = random.Random(7)
    answers = [Loose.model_validate(random_from_schema(Loose.model_json_schema(), rng)) for _ in range(60)]
    assert any(a.index < 0 for a in answers) and any(a.note == "" for a in answers)
    assert max(len(a.tags) for a in answers) == 4 and min(len(a.tags) for a in answers) == 0

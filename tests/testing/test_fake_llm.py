"""Tests of the fake OpenAI server, through the real ``openai`` client over real HTTP.

Why: every other LLM-facing test trusts this fake. If it answered something the real client
cannot parse, or mapped a fault to the wrong exception, those tests would prove nothing.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

import openai
import pytest
from pydantic import BaseModel, Field

from memoryos_workers.testing.fake_llm import DEFAULT_TEXT_ANSWER, FakeLLM, Fault, estimate_tokens, generate_from_schema

REPO_ROOT = Path(__file__).resolve().parents[2]
MESSAGES: list[Any] = [
    {"role": "system", "content": "You extract topics."},
    {"role": "user", "content": "We talked about the weather in Paris and about cats."},
]


# -- models used as response schemas ---------------------------------------------------------------


class Sentiment(str, Enum):
    positive = "positive"
    neutral = "neutral"
    negative = "negative"


class Entity(BaseModel):
    name: str
    kind: Literal["person", "place", "thing"]
    salience: float = Field(ge=0.0, le=1.0)


class Topic(BaseModel):
    title: str = Field(min_length=3, max_length=80)
    keywords: list[str] = Field(min_length=2)
    sentiment: Sentiment
    entities: list[Entity]
    summary: str | None = None
    weight: int = Field(default=1, ge=1, le=10)


class TopicList(BaseModel):
    topics: list[Topic]
    language: str | None
    heat: float | None = None


class Node(BaseModel):
    """Recursive model: the generator must stop descending."""

    label: str
    children: list[Node] = Field(default_factory=list)
    parent: Node | None = None


class Cat(BaseModel):
    pet_type: Literal["cat"]
    meows: int = Field(gt=0)


class Dog(BaseModel):
    pet_type: Literal["dog"]
    barks: float = Field(gt=0.5, lt=0.7)


class Edgy(BaseModel):
    """Everything pydantic likes to emit in a schema, to exercise the generator."""

    pet: Annotated[Cat | Dog, Field(discriminator="pet_type")]
    pair: tuple[int, str]
    tags: set[str] = Field(min_length=3)
    scores: dict[str, int]
    when: datetime
    day: date
    ident: uuid.UUID
    code: str = Field(pattern=r"^[A-Z]{3}-\d{2}$")
    step: int = Field(multiple_of=5, gt=7)
    ratio: float = Field(gt=0, le=1)
    maybe_node: Node | None
    tree: Node
    anything: Any
    fixed: Literal["always"]
    empty_ok: list[int] = Field(max_length=0)


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture
def client(llm: FakeLLM) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=llm.base_url, api_key="test", max_retries=0, timeout=5.0) as c:
        yield c


def json_schema_format(model: type[BaseModel], strict: bool = True) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": model.__name__, "schema": model.model_json_schema(), "strict": strict},
    }


def ask(client: openai.OpenAI, **kwargs: Any) -> str:
    """One chat call; returns the answer content."""
    kwargs.setdefault("model", "gpt-fake")
    kwargs.setdefault("messages", MESSAGES)
    response = client.chat.completions.create(**kwargs)
    content = response.choices[0].message.content
    assert content is not None
    return content


def raw_post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """POST with urllib (no openai client) so we control the headers exactly."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


# -- lifecycle & basics ----------------------------------------------------------------------------


def test_base_url_binds_localhost_free_port_and_lists_models(llm: FakeLLM, client: openai.OpenAI) -> None:
    assert llm.base_url.startswith("http://127.0.0.1:")
    assert llm.base_url.endswith("/v1")
    assert llm.port > 0
    models = client.models.list()
    assert [m.id for m in models.data] == ["fake-model"]
    assert llm.calls == 0  # /models is not a chat call


def test_two_servers_get_different_ports_and_stop_is_idempotent() -> None:
    with FakeLLM() as a, FakeLLM() as b:
        assert a.port != b.port
    a.stop()
    with pytest.raises(RuntimeError):
        _ = a.base_url


def test_plain_text_default_and_completion_shape(llm: FakeLLM, client: openai.OpenAI) -> None:
    response = client.chat.completions.create(model="gpt-fake", messages=MESSAGES)
    assert response.object == "chat.completion"
    assert response.id.startswith("chatcmpl-")
    assert response.model == "gpt-fake"
    assert response.created > 0
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == DEFAULT_TEXT_ANSWER
    assert choice.finish_reason == "stop"
    assert response.usage is not None
    prompt_len = sum(len(m["content"]) for m in MESSAGES)
    assert response.usage.prompt_tokens == math.ceil(prompt_len / 4)
    assert response.usage.completion_tokens == math.ceil(len(DEFAULT_TEXT_ANSWER) / 4)
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_path_without_v1_prefix_is_accepted(llm: FakeLLM) -> None:
    url = llm.base_url.removesuffix("/v1") + "/chat/completions"
    status, body = raw_post(url, {"model": "m", "messages": MESSAGES}, {"Authorization": "Bearer k"})
    assert status == 200
    assert body["choices"][0]["message"]["content"] == DEFAULT_TEXT_ANSWER


def test_missing_parameters_are_rejected_like_openai(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.reject_stream = True  # an endpoint that cannot stream
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.chat.completions.create(model="m", messages=[], extra_body={"stream": True})
    assert "stream" in str(excinfo.value)
    status, body = raw_post(f"{llm.base_url}/chat/completions", {"messages": MESSAGES},
                            {"Authorization": "Bearer k"})
    assert status == 400
    assert body["error"]["param"] == "model"


# -- json_schema -----------------------------------------------------------------------------------


def test_json_schema_default_answer_validates_against_pydantic_model(
    llm: FakeLLM, client: openai.OpenAI
) -> None:
    content = ask(client, response_format=json_schema_format(TopicList))
    parsed = TopicList.model_validate_json(content)
    assert len(parsed.topics) == 1
    topic = parsed.topics[0]
    assert topic.sentiment is Sentiment.positive  # enums pick the first member
    assert len(topic.keywords) >= 2 and len(topic.title) >= 3
    assert topic.entities[0].kind == "person"
    assert parsed.language == "x"  # anyOf picks the first non-null branch
    assert llm.last_request["response_format"]["type"] == "json_schema"
    assert llm.last_request["response_format"]["json_schema"]["name"] == "TopicList"


def test_openai_parse_helper_gets_a_parsed_model(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(model="gpt-fake", messages=MESSAGES, response_format=TopicList)
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, TopicList)


@pytest.mark.parametrize("model", [Topic, TopicList, Node, Edgy, Entity])
def test_generator_output_validates(model: type[BaseModel]) -> None:
    instance = generate_from_schema(model.model_json_schema())
    model.model_validate_json(json.dumps(instance))
    assert generate_from_schema(model.model_json_schema()) == instance  # deterministic


def test_generator_handles_hand_written_schema_features() -> None:
    schema = {
        "definitions": {"Inner": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}}},
        "type": "object",
        "properties": {
            "inner": {"allOf": [{"$ref": "#/definitions/Inner"}], "description": "wrapped ref"},
            "nullable": {"type": ["null", "string"]},
            "choice": {"oneOf": [{"type": "null"}, {"const": 7}]},
            "three": {"type": "array", "items": {"type": "boolean"}, "minItems": 3},
            "untyped_obj": {"properties": {"a": {"type": "number", "exclusiveMinimum": 2.5}}},
        },
        "required": ["inner", "extra"],
    }
    assert generate_from_schema(schema) == {
        "inner": {"n": 3},
        "nullable": "x",
        "choice": 7,
        "three": [True, False, True],
        "untyped_obj": {"a": 3.5},
        "extra": "x",
    }


def test_responder_dict_str_none_and_fault(llm: FakeLLM, client: openai.OpenAI) -> None:
    seen: list[dict[str, Any]] = []
    answers: list[Any] = [
        {"topics": [], "language": "fr"},
        "verbatim text",
        None,
        Fault.http(503),
    ]

    def responder(request: dict[str, Any]) -> Any:
        seen.append(request)
        return answers[len(seen) - 1]

    llm.responder = responder
    fmt = json_schema_format(TopicList)
    assert TopicList.model_validate_json(ask(client, response_format=fmt)).language == "fr"
    assert ask(client, response_format=fmt) == "verbatim text"
    TopicList.model_validate_json(ask(client, response_format=fmt))  # None -> generated default
    with pytest.raises(openai.InternalServerError):
        ask(client, response_format=fmt)
    assert seen[0]["messages"] == MESSAGES
    assert seen[0]["model"] == "gpt-fake"


def test_responder_exception_becomes_500(llm: FakeLLM, client: openai.OpenAI) -> None:
    def broken(request: dict[str, Any]) -> Any:
        raise KeyError("oops")

    llm.responder = broken
    with pytest.raises(openai.InternalServerError, match="KeyError"):
        ask(client)


def test_queue_scripts_answers_in_order_then_falls_back(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.responder = lambda request: "from responder"
    llm.queue_responses([{"a": 1}, "second", Fault.text("not json at all"), Fault.http(500), None])
    assert llm.pending == 5
    assert json.loads(ask(client)) == {"a": 1}
    assert ask(client) == "second"
    assert ask(client, response_format={"type": "json_object"}) == "not json at all"
    with pytest.raises(openai.InternalServerError):
        ask(client)
    assert ask(client) == "from responder"  # None in the queue = "normal answer"
    assert llm.pending == 0
    assert ask(client) == "from responder"


def test_json_object_default_and_scripted(llm: FakeLLM, client: openai.OpenAI) -> None:
    assert ask(client, response_format={"type": "json_object"}) == "{}"
    llm.responder = lambda request: {"topics": ["cats"]}
    assert json.loads(ask(client, response_format={"type": "json_object"})) == {"topics": ["cats"]}
    assert llm.requests[0]["response_format"] == {"type": "json_object"}


def test_reject_json_schema_then_json_object_fallback(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.reject_json_schema = True
    llm.queue_responses([{"topics": [], "language": None}])
    with pytest.raises(openai.BadRequestError) as excinfo:
        ask(client, response_format=json_schema_format(TopicList))
    assert excinfo.value.status_code == 400
    assert excinfo.value.body == {
        "message": "response_format json_schema is not supported by this model",
        "type": "invalid_request_error",
        "param": "response_format",
        "code": None,
    }
    # The rejection consumed nothing: the client's fallback request gets the scripted answer.
    assert llm.pending == 1
    content = ask(client, response_format={"type": "json_object"})
    assert TopicList.model_validate_json(content).topics == []
    assert [r["response_format"]["type"] for r in llm.requests] == ["json_schema", "json_object"]


def test_reject_schema_keyword_names_it_as_openai_strict_mode_does(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.reject_schema_keywords = ("maxLength",)
    schema = {"type": "object", "properties": {"theme": {"type": "string", "maxLength": 60}}, "required": ["theme"],
              "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "seg", "schema": schema, "strict": True}}
    with pytest.raises(openai.BadRequestError) as excinfo:
        ask(client, response_format=fmt)
    assert excinfo.value.body["message"] == ("Invalid schema for response_format 'seg': In context=('properties', "
                                             "'theme'), 'maxLength' is not permitted.")
    assert excinfo.value.body["param"] == "response_format"
    del schema["properties"]["theme"]["maxLength"]
    assert "theme" in json.loads(ask(client, response_format=fmt))  # without the keyword it is answered


# -- faults ----------------------------------------------------------------------------------------


def test_error_rate_one_raises_internal_server_error(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.error_rate = 1.0
    for _ in range(3):
        with pytest.raises(openai.InternalServerError) as excinfo:
            ask(client)
        assert excinfo.value.status_code == 500
        assert excinfo.value.body["type"] == "server_error"  # type: ignore[index]
    assert (llm.calls, llm.successes, llm.failures) == (3, 0, 3)
    assert llm.statuses[500] == 3


def test_error_status_knob(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.error_rate, llm.error_status = 1.0, 503
    with pytest.raises(openai.InternalServerError) as excinfo:
        ask(client)
    assert excinfo.value.status_code == 503


def test_http_429_has_retry_after(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.queue_responses([Fault.http(429), Fault.http(429, retry_after=2.5, message="slow down")])
    with pytest.raises(openai.RateLimitError) as first:
        ask(client)
    assert first.value.response.headers["retry-after"] == "1"
    assert first.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    with pytest.raises(openai.RateLimitError, match="slow down") as second:
        ask(client)
    assert second.value.response.headers["retry-after"] == "2.5"


def test_retrying_client_recovers_after_scripted_faults(llm: FakeLLM) -> None:
    llm.queue_responses([Fault.http(500, retry_after=0.01), Fault.http(429, retry_after=0.01), "ok"])
    with openai.OpenAI(base_url=llm.base_url, api_key="test", max_retries=2, timeout=5.0) as retrying:
        assert ask(retrying) == "ok"
    assert (llm.calls, llm.failures, llm.successes) == (3, 2, 1)


def test_timeout_fault_triggers_client_timeout_quickly(llm: FakeLLM) -> None:
    llm.queue_responses([Fault.timeout()])
    start = time.monotonic()
    with openai.OpenAI(base_url=llm.base_url, api_key="test", max_retries=0, timeout=0.5) as c:
        with pytest.raises(openai.APITimeoutError):
            ask(c)
        assert time.monotonic() - start < 2.0
        assert ask(c) == DEFAULT_TEXT_ANSWER  # the server keeps serving other requests meanwhile
    assert llm.faults["timeout"] == 1


def test_timeout_rate_and_stop_interrupts_hang() -> None:
    llm = FakeLLM(timeout_rate=1.0, hang_seconds=60).start()
    errors: list[BaseException] = []

    def call() -> None:
        with openai.OpenAI(base_url=llm.base_url, api_key="test", max_retries=0, timeout=30) as c:
            try:
                ask(c)
            except BaseException as exc:  # recorded for the assertion below
                errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 5
    while llm.calls == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    start = time.monotonic()
    llm.stop()
    thread.join(timeout=5)
    assert time.monotonic() - start < 2.0
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], openai.APIConnectionError)


def test_malformed_json_is_not_parseable(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.queue_responses([Fault.malformed(), Fault.malformed('{"topics": [')])
    for _ in range(2):
        content = ask(client, response_format=json_schema_format(TopicList))
        with pytest.raises(ValueError):
            json.loads(content)
    llm.malformed_rate = 1.0
    content = ask(client, response_format={"type": "json_object"})
    with pytest.raises(ValueError):
        json.loads(content)
    assert llm.faults["malformed"] == 3
    assert llm.failures == 3 and llm.successes == 0


def test_latency_and_delay(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.latency = 0.2
    start = time.monotonic()
    ask(client)
    assert time.monotonic() - start >= 0.2
    llm.latency = 0.0
    llm.queue_responses([Fault.delay(0.2)])
    start = time.monotonic()
    assert ask(client) == DEFAULT_TEXT_ANSWER
    assert time.monotonic() - start >= 0.2


def _outcomes(llm: FakeLLM, client: openai.OpenAI, n: int) -> list[bool]:
    out = []
    for _ in range(n):
        try:
            ask(client)
            out.append(True)
        except openai.InternalServerError:
            out.append(False)
    return out


def test_seeded_error_rate_is_reproducible(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.error_rate, llm.seed = 0.3, 1234
    first = _outcomes(llm, client, 50)
    assert 8 <= first.count(False) <= 22  # roughly 30 %
    assert llm.failures == first.count(False)
    llm.reset()  # re-seeds with the same seed
    assert _outcomes(llm, client, 50) == first
    llm.seed = 1234
    assert _outcomes(llm, client, 50) == first
    llm.seed = 99
    assert _outcomes(llm, client, 50) != first


# -- counters & auth -------------------------------------------------------------------------------


def test_counters_and_tokens(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.queue_responses(["short", "a somewhat longer answer", Fault.http(500)])
    usages = []
    for _ in range(2):
        response = client.chat.completions.create(model="gpt-fake", messages=MESSAGES)
        usages.append(response.usage)
    with pytest.raises(openai.InternalServerError):
        ask(client)
    prompt_each = estimate_tokens("".join(m["content"] for m in MESSAGES))
    assert (llm.calls, llm.successes, llm.failures) == (3, 2, 1)
    assert llm.prompt_tokens == 2 * prompt_each == sum(u.prompt_tokens for u in usages if u)
    assert llm.completion_tokens == estimate_tokens("short") + estimate_tokens("a somewhat longer answer")
    assert len(llm.requests) == 3
    assert llm.stats()["statuses"] == {"200": 2, "500": 1}
    llm.queue_responses(["left over"])
    llm.reset()
    assert (llm.calls, llm.successes, llm.failures) == (0, 0, 0)
    assert (llm.prompt_tokens, llm.completion_tokens) == (0, 0)
    assert llm.requests == [] and llm.pending == 0


def test_counters_are_thread_safe(llm: FakeLLM, client: openai.OpenAI) -> None:
    llm.latency = 0.05
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: ask(client), range(32)))
    assert results == [DEFAULT_TEXT_ANSWER] * 32
    assert llm.calls == llm.successes == len(llm.requests) == 32


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "Basic dXNlcjpwdw=="}]
)
def test_missing_auth_is_401(llm: FakeLLM, headers: dict[str, str]) -> None:
    status, body = raw_post(f"{llm.base_url}/chat/completions", {"model": "m", "messages": MESSAGES}, headers)
    assert status == 401
    assert body["error"]["type"] == "invalid_request_error"
    assert llm.unauthorized == 1 and llm.failures == 1 and llm.successes == 0


def test_auth_key_is_never_recorded_or_logged(llm: FakeLLM, caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-very-secret-123"
    with caplog.at_level("DEBUG", logger="memoryos_workers.testing.fake_llm"):
        with openai.OpenAI(base_url=llm.base_url, api_key=secret, max_retries=0, timeout=5) as c:
            ask(c)
    assert llm.successes == 1
    assert secret not in caplog.text
    assert secret not in json.dumps(llm.requests) + json.dumps(llm.stats())


# -- standalone ------------------------------------------------------------------------------------


def test_standalone_process_prints_base_url() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "memoryos_workers.testing.fake_llm", "--port", "0", "--latency", "0.01"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        with openai.OpenAI(base_url=base_url, api_key="test", max_retries=0, timeout=5) as c:
            assert ask(c) == DEFAULT_TEXT_ANSWER
        with urllib.request.urlopen(base_url.removesuffix("/v1") + "/_fake/stats", timeout=5) as response:
            assert json.loads(response.read())["calls"] == 1
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=5)
    assert proc.returncode == 0, stderr

"""A prompt too long for the model's window, an answer cut at its budget, and the sizes a call asks for,
through the real openai client against the fake server over real HTTP.

What is checked: a context-length refusal, in the words of OpenAI, vLLM, llama.cpp, Ollama and LM
Studio, raises LLMContextOverflow (with the window and the tokens requested when the message gives
them) after one request, never two; other refusals are not taken for it; an answer cut with
finish_reason "length" raises LLMTruncated with what arrived, after one request; a call sends its
completion budget as max_tokens (or max_completion_tokens where the endpoint wants it) and may bring
its own schema; prompt_budget leaves room for the answer and a margin.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from memoryos_workers.llm.base import LLMContextOverflow, LLMError, LLMTruncated
from memoryos_workers.llm.client import LLMClient
from memoryos_workers.testing.fake_llm import FakeLLM, Fault, estimate_tokens
from schemas.settings import Settings

MESSAGES = [
    {"role": "system", "content": "You list the topics of a conversation."},
    {"role": "user", "content": "We talked about rye bread, a trip to Lisbon and the new puppy."},
]


class Topics(BaseModel):
    topics: list[str]


def client_for(fake_llm: FakeLLM, **overrides: Any) -> LLMClient:
    return LLMClient(Settings(openai_base_url=fake_llm.base_url, openai_api_key="k", **overrides))


# (status, body as the server sends it, window, tokens requested) -- bodies as each server shapes them
PROVIDERS = {
    "openai": (400, {"error": {
        "message": "This model's maximum context length is 4096 tokens. However, your messages resulted in 4705 "
                   "tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}, 4096, 4705),
    "vllm": (400, {
        "object": "error", "message": "This model's maximum context length is 4096 tokens. However, you requested "
        "4705 tokens (4193 in the messages, 512 in the completion). Please reduce the length of the messages or "
        "completion.", "type": "BadRequestError", "param": None, "code": 400}, 4096, 4705),
    "vllm-input-tokens": (400, {"error": {
        "message": "'max_tokens' or 'max_completion_tokens' is too large: 2048. This model's maximum context length "
                   "is 4096 tokens and your request has 3000 input tokens (2048 > 4096 - 3000).",
        "type": "BadRequestError", "param": None, "code": 400}}, 4096, 3000),
    "vllm-prompt-too-long": (400, {
        "object": "error", "message": "The prompt (total length 4705) is too long to fit into the model "
        "(context length 4096). Make sure that `max_model_len` is no smaller than the number of text tokens.",
        "type": "BadRequestError", "param": None, "code": 400}, 4096, 4705),
    "llama.cpp": (400, {"error": {
        "code": 400, "message": "the request exceeds the available context size, try increasing it",
        "type": "exceed_context_size_error", "n_prompt_tokens": 4705, "n_ctx": 4096}}, 4096, 4705),
    "llama.cpp-500": (500, {"error": {
        "code": 500, "message": "the request exceeds the available context size. try increasing the context "
        "size or enable context shift", "type": "exceed_context_size_error", "n_prompt_tokens": 4705,
        "n_ctx": 4096}}, 4096, 4705),
    "ollama": (400, {"error": {
        "message": "prompt too long; exceeded max context length by 609 tokens", "type": "api_error",
        "param": None, "code": None}}, None, None),
    "ollama-input": (500, {"error": {
        "message": "input exceeds maximum context length", "type": "api_error", "param": None, "code": None}},
        None, None),
    "lm-studio": (400, {"error": "Trying to keep the first 4705 tokens when context the overflows. However, the "
                  "model is loaded with context length of only 4096 tokens, which is not enough. Try to load the "
                  "model with a larger context length, or provide a shorter input"}, 4096, None),
}  # fmt: skip


@pytest.mark.parametrize("provider", PROVIDERS)
def test_context_overflow_in_each_providers_words_is_raised_after_one_request(
    fake_llm: FakeLLM, provider: str
) -> None:
    status, body, limit, requested = PROVIDERS[provider]
    client = client_for(fake_llm)
    fake_llm.queue_responses([Fault.http(status, body=body)] * 3)  # were it asked again, it would fail again

    with pytest.raises(LLMContextOverflow, match="MEMORYOS_LLM_CONTEXT_TOKENS") as excinfo:
        client.structured(MESSAGES, Topics, name="topics")

    assert fake_llm.calls == 1, "the same request is never sent again"
    error = excinfo.value
    assert (error.limit, error.requested) == (limit, requested)
    assert error.usage is not None and error.usage.calls == 1
    assert client.totals.calls == 1


def test_the_fake_servers_context_window_is_an_overflow_and_teaches_the_count(fake_llm: FakeLLM) -> None:
    client = client_for(fake_llm)
    long_messages = [MESSAGES[0], {"role": "user", "content": "rye bread and Lisbon. " * 200}]
    server_count = estimate_tokens("".join(m["content"] for m in long_messages))
    fake_llm.context_tokens = 500
    before = abs(client.count_tokens(long_messages) - server_count)

    with pytest.raises(LLMContextOverflow) as excinfo:
        client.structured(long_messages, Topics, name="topics")

    assert fake_llm.calls == 1 and fake_llm.faults["context_length"] == 1
    assert (excinfo.value.limit, excinfo.value.requested) == (500, server_count)
    assert abs(client.count_tokens(long_messages) - server_count) < before, "the refusal's count calibrates"
    assert client.structured(MESSAGES, Topics, name="topics").usage.calls == 1, "a prompt that fits goes through"


def test_a_refusal_raised_inside_a_stream_is_heard_by_asking_once_whole(fake_llm: FakeLLM) -> None:
    """llama-cpp-python answers 200 and an empty stream to a prompt over its window (the refusal is
    raised inside the stream): the client asks once without streaming, where the 400 can be read."""
    client = client_for(fake_llm)
    long_messages = [MESSAGES[0], {"role": "user", "content": "rye bread and Lisbon. " * 200}]
    fake_llm.context_tokens = 500
    fake_llm.context_refusal_in_stream = True

    with pytest.raises(LLMContextOverflow) as excinfo:
        client.structured(long_messages, Topics, name="topics")

    assert [r.get("stream", False) for r in fake_llm.requests] == [True, False], "one stream, one whole request"
    assert excinfo.value.limit == 500 and excinfo.value.usage is not None and excinfo.value.usage.calls == 2
    assert client.structured(MESSAGES, Topics, name="topics").usage.calls == 1, "streaming goes on"
    assert fake_llm.last_request["stream"] is True


@pytest.mark.parametrize(
    ("status", "message"),
    [(400, "Invalid value for 'temperature': must be at most 2."), (429, "Too many tokens, please wait.")],
)
def test_other_refusals_are_not_taken_for_an_overflow(fake_llm: FakeLLM, status: int, message: str) -> None:
    client = client_for(fake_llm, llm_max_attempts=2)
    fake_llm.queue_responses([Fault.http(status, message)] * 2)
    with pytest.raises(LLMError) as excinfo:
        client.structured(MESSAGES, Topics, name="topics")
    assert not isinstance(excinfo.value, LLMContextOverflow)
    assert fake_llm.calls == (2 if status == 429 else 1), "a rate limit is retried, a bad request is not"


@pytest.mark.parametrize("stream", [True, False])
def test_a_truncated_answer_raises_with_what_arrived_after_one_request(fake_llm: FakeLLM, stream: bool) -> None:
    client = client_for(fake_llm, llm_stream=stream)
    full = json.dumps({"topics": ["rye bread", "a trip to Lisbon", "the new puppy", "their garden"]})
    fake_llm.responder = lambda request: full
    fake_llm.truncate_at_tokens = 10

    with pytest.raises(LLMTruncated, match="MEMORYOS_LLM_COMPLETION_TOKENS") as excinfo:
        client.structured(MESSAGES, Topics, name="topics", max_tokens=10)

    assert excinfo.value.partial_text == full[:40], "the 10 tokens received"
    assert fake_llm.calls == 1, "asking the same again would be cut the same way"
    assert excinfo.value.usage is not None and excinfo.value.usage.completion_tokens == 10
    assert fake_llm.last_request["max_tokens"] == 10
    assert ("stream" in fake_llm.last_request) is stream


def test_a_call_brings_its_own_schema_and_budget(fake_llm: FakeLLM) -> None:
    """schema= replaces the model's schema on the wire (here: exactly three topics), and a server that
    answers anything the schema allows then answers what the call asked."""
    client = client_for(fake_llm)
    schema = {
        "type": "object", "additionalProperties": False, "required": ["topics"],
        "properties": {"topics": {"type": "array", "minItems": 3, "maxItems": 3,
                                  "items": {"type": "string", "maxLength": 30}}},
    }  # fmt: skip
    fake_llm.generic = True

    for _ in range(5):
        result = client.structured(MESSAGES, Topics, name="topics", schema=schema, max_tokens=300)
        assert len(result.value.topics) == 3 and all(len(t) <= 30 for t in result.value.topics)
    sent = fake_llm.last_request
    assert sent["response_format"]["json_schema"] == {"name": "topics", "schema": schema, "strict": True}
    assert sent["max_tokens"] == 300


def test_an_endpoint_that_wants_max_completion_tokens_gets_it(fake_llm: FakeLLM) -> None:
    client = client_for(fake_llm, llm_completion_tokens=512)
    fake_llm.queue_responses([Fault.http(400, "Unsupported parameter: 'max_tokens' is not supported with this "
                                              "model. Use 'max_completion_tokens' instead.")])
    assert client.structured(MESSAGES, Topics, name="topics").usage.calls == 2
    client.structured(MESSAGES, Topics, name="topics")
    assert [(r.get("max_tokens"), r.get("max_completion_tokens")) for r in fake_llm.requests] == [
        (512, None), (None, 512), (None, 512)
    ]


def test_prompt_budget_leaves_room_for_the_answer_and_a_margin(fake_llm: FakeLLM) -> None:
    client = client_for(fake_llm, llm_context_tokens=4096, llm_completion_tokens=1024)
    assert client.prompt_budget() == 4096 - 1024 - 205  # 5 % of the window kept for the estimate's error
    assert client.prompt_budget(max_tokens=2000) == 4096 - 2000 - 205
    with pytest.raises(ValueError, match="MEMORYOS_LLM_CONTEXT_TOKENS"):
        client.prompt_budget(max_tokens=4000)
    with pytest.raises(ValidationError, match="MEMORYOS_LLM_COMPLETION_TOKENS"):
        Settings(llm_context_tokens=2048, llm_completion_tokens=2048)
    assert Settings(llm_context_tokens=2048, llm_completion_tokens=1024).llm_completion_tokens == 1024



def test_the_stub_sizes_and_refuses_as_the_adapter() -> None:
    """StubLLM (llm/stub.py) stands in for the client in stage tests: the same prompt arithmetic, the
    call's schema and budget recorded, a scripted overflow or cut answer raised as it is, at once."""
    from memoryos_workers.llm.stub import StubLLM

    llm = StubLLM(context_tokens=4096, completion_tokens=1024, max_attempts=3)
    assert llm.prompt_budget() == client_for_settings(4096, 1024).prompt_budget() == 4096 - 1024 - 205
    assert llm.count_tokens("x" * 400) == 100 and llm.count_tokens(MESSAGES) > llm.count_tokens(
        "".join(m["content"] for m in MESSAGES)
    ), "messages carry their template overhead"

    llm.queue([LLMContextOverflow("too long", limit=4096, requested=5000), LLMTruncated("cut", partial_text="{")])
    schema = {"type": "object", "properties": {"topics": {"type": "array", "items": {"type": "string"}}}}
    with pytest.raises(LLMContextOverflow) as overflow:
        llm.structured(MESSAGES, Topics, name="topics", schema=schema, max_tokens=300)
    with pytest.raises(LLMTruncated) as cut:
        llm.structured(MESSAGES, Topics, name="topics")
    assert overflow.value.usage is not None and overflow.value.usage.calls == 1 and cut.value.partial_text == "{"
    assert len(llm.calls) == 2, "neither asked again"
    assert (llm.calls[0].schema, llm.calls[0].max_tokens) == (schema, 300)


def client_for_settings(window: int, answer: int) -> LLMClient:
    return LLMClient(Settings(llm_context_tokens=window, llm_completion_tokens=answer))

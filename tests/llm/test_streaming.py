"""Streamed LLM calls through the real openai client against the fake server over real HTTP.

What is checked: a slow model that keeps sending finishes at the default timeout (the timeout is on
silence, not on the whole call); a stalled one is cut after the silence timeout and a never-ending one
after the call cap; a stream without usage is counted by the estimate (and corrects the token budget
by it); endpoints that refuse streaming or stream_options, or ignore stream=true, keep working.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
import redis
from pydantic import BaseModel

from memoryos_workers.llm.base import LLMError
from memoryos_workers.llm.client import LLMClient
from memoryos_workers.llm.token_budget import TokenBudget
from memoryos_workers.testing.fake_llm import DEFAULT_TEXT_ANSWER, FakeLLM, estimate_tokens
from schemas.settings import Settings
from tests.conftest import PREFIX

MESSAGES = [
    {"role": "system", "content": "You write notes."},
    {"role": "user", "content": "Write a long note about sourdough starters and rye flour."},
]


class Note(BaseModel):
    text: str


def note_of_tokens(tokens: int) -> dict[str, str]:
    """A Note whose JSON is exactly `tokens` of the fake's tokens (4 characters each)."""
    overhead = len(json.dumps({"text": ""}))
    return {"text": "x" * (tokens * 4 - overhead)}


def client_for(fake_llm: FakeLLM, **overrides: object) -> LLMClient:
    return LLMClient(Settings(openai_base_url=fake_llm.base_url, openai_api_key="k", **overrides))  # type: ignore[arg-type]


DEFAULT_SILENCE = Settings.model_fields["llm_timeout"].default
DEFAULT_CAP = Settings.model_fields["llm_call_timeout"].default


def test_a_slow_streaming_model_finishes_at_the_default_timeout(fake_llm: FakeLLM) -> None:
    """5 tokens/s, a 300-token answer: a minute of answering, twice the old 30 s timeout on a whole
    call; the default silence timeout lets it finish because tokens keep coming."""
    client = client_for(fake_llm, llm_timeout=DEFAULT_SILENCE, llm_call_timeout=DEFAULT_CAP)
    answer = note_of_tokens(300)
    fake_llm.responder = lambda request: answer
    fake_llm.stream_tokens_per_s = 5
    fake_llm.latency = 1.0  # reading the prompt before the first token

    started = time.monotonic()
    result = client.structured(MESSAGES, Note, name="note")
    elapsed = time.monotonic() - started

    assert result.value.text == answer["text"]
    assert elapsed >= 55, f"the answer took {elapsed:.1f} s: it really was slow"
    assert result.usage.calls == 1 and fake_llm.calls == 1, "never cut and asked again"
    assert result.usage.completion_tokens == 300, "usage from the stream's last chunk"
    request = fake_llm.last_request
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}
    assert request["max_tokens"] == Settings.model_fields["llm_completion_tokens"].default


def test_a_stalled_stream_is_cut_after_the_silence_timeout(fake_llm: FakeLLM) -> None:
    client = client_for(fake_llm, llm_timeout=1.0, llm_max_attempts=2)
    fake_llm.responder = lambda request: note_of_tokens(100)
    fake_llm.stream_tokens_per_s = 50
    fake_llm.stall_after_tokens = 10  # then silence, as a stuck server

    started = time.monotonic()
    with pytest.raises(LLMError, match="MEMORYOS_LLM_TIMEOUT") as excinfo:
        client.structured(MESSAGES, Note, name="note")
    elapsed = time.monotonic() - started

    assert fake_llm.calls == 2 and excinfo.value.usage is not None and excinfo.value.usage.calls == 2
    assert 2.0 <= elapsed < 4.5, f"two attempts of ~0.2 s of tokens then 1 s of silence, took {elapsed:.1f} s"

    fake_llm.stall_after_tokens = None  # the server recovers: the same client goes on
    assert client.structured(MESSAGES, Note, name="note").usage.calls == 1


def test_a_model_that_never_stops_is_cut_by_the_call_cap(fake_llm: FakeLLM) -> None:
    client = client_for(fake_llm, llm_timeout=5.0, llm_call_timeout=1.5, llm_max_attempts=1)
    fake_llm.responder = lambda request: note_of_tokens(300)
    fake_llm.stream_tokens_per_s = 20  # alive, but 15 s for the whole answer

    started = time.monotonic()
    with pytest.raises(LLMError, match="MEMORYOS_LLM_CALL_TIMEOUT"):
        client.structured(MESSAGES, Note, name="note")
    assert 1.4 <= time.monotonic() - started < 3.0
    assert fake_llm.calls == 1


def test_a_stream_without_usage_is_counted_by_the_estimate(fake_llm: FakeLLM, redis_client: redis.Redis) -> None:
    """llama.cpp's server sends no usage: the estimate stands in, for the counters and for the token
    budget's correction, and teaches the calibration nothing."""
    key = f"{PREFIX}:llmtat-{uuid.uuid4().hex[:8]}"
    tpm = 600  # 10 tokens a second: the budget's arithmetic shows to the token
    budget = TokenBudget(redis_client, key, tpm, max_wait=1e9, sleep=lambda seconds: None)
    client = LLMClient(
        Settings(openai_base_url=fake_llm.base_url, openai_api_key="k", llm_completion_reserve=300), budget=budget
    )
    answer = note_of_tokens(40)
    fake_llm.responder = lambda request: answer
    fake_llm.stream_usage = False
    ratio_before = client.counter.chars_per_token
    budget.reserve(tpm)  # the minute's burst is spent: what follows is committed time

    result = client.structured(MESSAGES, Note, name="note")

    prompt, completion = client.count_tokens(MESSAGES), client.count_tokens(json.dumps(answer))
    assert result.value.text == answer["text"]
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (prompt, completion)
    assert prompt != estimate_tokens("".join(m["content"] for m in MESSAGES)), "not the server's count"
    committed = TokenBudget(redis_client, key, tpm, max_wait=1e9, sleep=lambda seconds: None).reserve(0)
    assert committed == pytest.approx((prompt + completion) / 10, abs=0.25), "corrected by the estimate"
    assert client.counter.chars_per_token == ratio_before, "no report, nothing learned"
    redis_client.delete(key)


def test_an_endpoint_without_usage_in_streams_is_asked_whole_until_the_count_is_calibrated(
    fake_llm: FakeLLM,
) -> None:
    client = client_for(fake_llm)
    fake_llm.stream_usage = False
    fake_llm.responder = lambda request: note_of_tokens(20)
    long_messages = [MESSAGES[0], {"role": "user", "content": "Rye flour feeds a starter well. " * 190}]  # ~1,500

    usages = [client.structured(long_messages, Note, name="note").usage for _ in range(4)]

    assert [r.get("stream", False) for r in fake_llm.requests] == [True, False, False, True]
    reported = estimate_tokens("".join(m["content"] for m in long_messages))
    assert [u.prompt_tokens == reported for u in usages] == [False, True, True, False], "estimate, usage, usage"
    assert client.counter.calibrated and abs(client.count_tokens(long_messages) - reported) < 0.03 * reported
    assert usages[3].prompt_tokens == client.count_tokens(long_messages)


def test_an_endpoint_refusing_stream_options_streams_without_them(fake_llm: FakeLLM) -> None:
    client = client_for(fake_llm)
    fake_llm.reject_stream_options = True
    fake_llm.responder = lambda request: note_of_tokens(20)

    first = client.structured(MESSAGES, Note, name="note")
    second = client.structured(MESSAGES, Note, name="note")

    assert first.usage.calls == 2 and second.usage.calls == 1, "adapted once, remembered"
    assert [("stream_options" in r, r.get("stream", False)) for r in fake_llm.requests] == [
        (True, True), (False, True), (False, False)
    ], "then, with no usage in its streams, whole answers until the token count is calibrated"
    assert first.usage.completion_tokens == client.count_tokens(json.dumps(note_of_tokens(20))), "estimated"
    assert second.usage.completion_tokens == 20, "reported"


def test_an_endpoint_without_streaming_keeps_working(fake_llm: FakeLLM) -> None:
    client = client_for(fake_llm, llm_timeout=0.5, llm_call_timeout=10)
    fake_llm.reject_stream = True
    fake_llm.responder = lambda request: note_of_tokens(20)

    first = client.structured(MESSAGES, Note, name="note")
    assert first.usage.calls == 2 and fake_llm.statuses[400] == 1
    assert first.usage.completion_tokens == 20, "the whole answer's reported usage"

    # A whole answer is one long silence: the call cap is its timeout, not the silence timeout.
    fake_llm.stream_tokens_per_s = 20  # 20 tokens: a second before the answer, twice the silence timeout
    second = client.structured(MESSAGES, Note, name="note")
    assert second.usage.calls == 1 and "stream" not in fake_llm.last_request
    assert fake_llm.statuses[400] == 1, "the refusal is remembered"


def test_a_server_that_ignores_stream_and_answers_json_is_read(fake_llm: FakeLLM) -> None:
    client = client_for(fake_llm)
    fake_llm.ignore_stream = True
    fake_llm.responder = lambda request: note_of_tokens(20)

    result = client.structured(MESSAGES, Note, name="note")
    assert result.value == Note(**note_of_tokens(20))
    assert result.usage.calls == 1 and result.usage.completion_tokens == 20
    assert fake_llm.last_request["stream"] is True


def test_plain_text_answers_stream_too(fake_llm: FakeLLM) -> None:
    client = client_for(fake_llm)
    fake_llm.responder = None
    fake_llm.text_answer = "A reply for the user. " * 20
    try:
        text, usage = client.text([{"role": "user", "content": "Say something."}])
    finally:
        fake_llm.text_answer = DEFAULT_TEXT_ANSWER
    assert text == "A reply for the user. " * 20
    assert fake_llm.last_request["stream"] is True and "max_tokens" not in fake_llm.last_request
    assert usage.calls == 1 and usage.completion_tokens == estimate_tokens(text)

"""The calibrated token count: real Redis, the real openai client against the fake server (which
counts ceil(characters / 4) per prompt, standing in for a provider's tokenizer).

What is checked: before any answer the count is conservative (above the provider's); it converges
toward the provider's reported usage over a few calls; what one client learned reaches a second
client (another worker) through Redis, and not another model's; nonsense reports teach nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from pydantic import BaseModel

from memoryos_workers.llm.client import LLMClient
from memoryos_workers.llm.token_count import TokenCounter
from memoryos_workers.testing.fake_llm import FakeLLM, estimate_tokens
from producers.wire.keys import Keys
from schemas.settings import Settings
from tests.conftest import PREFIX


class Topics(BaseModel):
    topics: list[str]


@pytest.fixture
def keys(redis_client: redis.Redis) -> Iterator[Keys]:
    keys = Keys(f"{PREFIX}-cal-{uuid.uuid4().hex[:8]}")
    yield keys
    for key in redis_client.scan_iter(match=f"{keys.prefix}:*"):
        redis_client.delete(key)


def worker_client(fake_llm: FakeLLM, redis_client: redis.Redis, keys: Keys, model: str = "fake-model") -> LLMClient:
    """An LLM client as a worker's runtime builds it: its own connection, the shared calibration key."""
    settings = Settings(openai_base_url=fake_llm.base_url, openai_api_key="k", llm_model=model)
    connection = redis.Redis.from_url(settings.redis_url)
    return LLMClient(settings, counter=TokenCounter(connection, keys.llm_calibration(model)))


def conversation(i: int) -> list[dict[str, str]]:
    lines = "\n".join(f"user: day {i}.{n}, we baked rye bread and planned Lisbon; assistant: noted." for n in range(30))
    return [{"role": "system", "content": "List the topics."}, {"role": "user", "content": lines}]


def provider_count(messages: list[dict[str, str]]) -> int:
    return estimate_tokens("".join(m["content"] for m in messages))


def test_the_count_converges_to_reported_usage_and_is_shared_through_redis(
    fake_llm: FakeLLM, redis_client: redis.Redis, keys: Keys
) -> None:
    probe = conversation(999)
    truth = provider_count(probe)
    first = worker_client(fake_llm, redis_client, keys)
    errors = [first.count_tokens(probe) / truth - 1]
    assert errors[0] > 0.1, "before any answer: above the provider's count (conservative)"

    for i in range(6):
        messages = conversation(i)
        answer = first.structured(messages, Topics, name="topics")
        assert answer.usage.prompt_tokens == provider_count(messages), "usage as the provider reported it"
        errors.append(first.count_tokens(probe) / truth - 1)

    assert all(later < earlier for earlier, later in zip(errors, errors[1:], strict=False)), errors
    assert abs(errors[-1]) < 0.03, f"within 3 % of the provider's count after 6 calls: {errors}"

    second = worker_client(fake_llm, redis_client, keys)  # another worker, started later
    assert second.count_tokens(probe) == first.count_tokens(probe), "learned once, shared through Redis"
    other_model = worker_client(fake_llm, redis_client, keys, model="another-model")
    assert other_model.count_tokens(probe) == pytest.approx(truth * (1 + errors[0]), abs=1), "kept per model"


def test_implausible_reports_teach_nothing(redis_client: redis.Redis, keys: Keys) -> None:
    counter = TokenCounter(redis_client, keys.llm_calibration("m"))
    text = "a sentence of about forty characters ..." * 10
    before = counter.count(text)
    counter.learn(text, 0)  # some servers report 0 prompt tokens
    counter.learn(text, 10_000)  # or counts that no tokenizer gives
    assert counter.count(text) == before
    assert not redis_client.exists(keys.llm_calibration("m"))
    counter.learn(text, 100)
    assert counter.count(text) < before and redis_client.exists(keys.llm_calibration("m"))


def test_without_redis_the_count_is_learned_in_the_process(fake_llm: FakeLLM) -> None:
    client = LLMClient(Settings(openai_base_url=fake_llm.base_url, openai_api_key="k"))
    probe = conversation(7)
    before = client.count_tokens(probe)
    client.structured(conversation(1), Topics, name="topics")
    assert abs(client.count_tokens(probe) - provider_count(probe)) < abs(before - provider_count(probe))

"""The shared LLM token budget (MEMORYOS_LLM_TOKENS_PER_MINUTE): real Redis, the real openai client
against the fake LLM server, Promoter and PersonaWorker driven on private runtimes.

What is checked: workers with separate clients draw from one budget and queue behind each other's
reservations; a reservation is corrected by the reported usage; answers to users are charged but
never held; a call that would wait too long reserves nothing; a batch or persona extraction that meets
an exhausted budget waits (no fallback, no attempt counted, no dead letter) and goes on once it refills.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import pytest
import redis

from memoryos_workers.counters import read_counters
from memoryos_workers.llm.base import LLMRateLimited, RateLimited
from memoryos_workers.llm.client import LLMClient
from memoryos_workers.llm.token_budget import TokenBudget
from memoryos_workers.pipeline.answer_schemas import AnyJSON, segmentation_schema
from memoryos_workers.pipeline.prompts import segmentation_messages
from producers.wire import state
from producers.wire.keys import Sharded
from schemas.settings import Settings
from schemas.turns import Page
from tests.conftest import PREFIX

TPM = 6000  # 100 tokens a second; a burst of a minute is 6000 tokens


class Sleeps(list):
    """Stands in for time.sleep: records each wait, so the arithmetic is checked without waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def budget_key(redis_client: redis.Redis):  # noqa: ANN201
    key = f"{PREFIX}:llmtat-{uuid.uuid4().hex[:8]}"
    yield key
    redis_client.delete(key)


def committed(client: redis.Redis, key: str) -> float:
    """Seconds of budget committed beyond the burst, as the next caller would see it (0 = free now)."""
    probe = TokenBudget(client, key, TPM, max_wait=1e9, sleep=Sleeps())
    return probe.reserve(0)


# -- the budget itself -----------------------------------------------------------------------------


def test_workers_share_one_budget_and_queue_behind_each_other(redis_client, settings, budget_key) -> None:  # noqa: ANN001
    other_client = redis.Redis.from_url(settings.redis_url)  # a second worker: its own connection
    stats_key = f"{budget_key}:stats"
    a_sleeps, b_sleeps = Sleeps(), Sleeps()
    a = TokenBudget(redis_client, budget_key, TPM, max_wait=60, stats_key=Sharded((stats_key,)), sleep=a_sleeps)
    b = TokenBudget(other_client, budget_key, TPM, max_wait=60, stats_key=Sharded((stats_key,)), sleep=b_sleeps)
    try:
        assert a.reserve(TPM) == 0, "a whole minute's budget may be spent at once"
        assert b.reserve(300) == pytest.approx(3.0, abs=0.3)  # 300 tokens at 100/s
        assert a.reserve(100) == pytest.approx(4.0, abs=0.3)  # behind b's reservation
        assert a_sleeps == [pytest.approx(4.0, abs=0.3)] and b_sleeps == [pytest.approx(3.0, abs=0.3)]
        b.charge(-400)  # both reservations turned out unused
        assert committed(redis_client, budget_key) == pytest.approx(0.0, abs=0.3)
        assert 0 < redis_client.pttl(budget_key) <= 61_000, "the key expires once the budget is whole again"
        counters = redis_client.hgetall(stats_key)
        assert counters["llm_rate_waits"] == "2" and 6400 <= int(counters["llm_rate_wait_ms"]) <= 7100
    finally:
        other_client.close()
        redis_client.delete(stats_key)


def test_a_call_that_would_wait_too_long_reserves_nothing(redis_client, budget_key) -> None:  # noqa: ANN001
    sleeps = Sleeps()
    budget = TokenBudget(redis_client, budget_key, TPM, max_wait=5, sleep=sleeps)
    budget.reserve(TPM)
    budget.reserve(200)  # 2 s committed beyond the burst
    assert sleeps == [pytest.approx(2.0, abs=0.3)]
    with pytest.raises(RateLimited, match="MEMORYOS_LLM_TOKENS_PER_MINUTE"):
        budget.reserve(400)  # would wait 6 s
    assert committed(redis_client, budget_key) == pytest.approx(2.0, abs=0.3), "the refused call took nothing"
    assert budget.reserve(250) == pytest.approx(4.5, abs=0.3)


def test_refunds_never_bank_credit_beyond_a_full_budget(redis_client, budget_key) -> None:  # noqa: ANN001
    budget = TokenBudget(redis_client, budget_key, TPM, max_wait=60, sleep=Sleeps())
    budget.charge(-10_000)
    assert not redis_client.exists(budget_key)
    assert budget.reserve(TPM) == 0
    assert budget.reserve(100) == pytest.approx(1.0, abs=0.3)


def test_bad_budget() -> None:
    with pytest.raises(ValueError, match="tokens_per_minute"):
        TokenBudget(redis.Redis(), "k", 0, max_wait=1)


# -- through the LLM client, over real HTTP --------------------------------------------------------


def _messages() -> list[dict[str, str]]:
    page = Page(seq=1, user_id="u", turn_id="t", user_input="I bake sourdough every Sunday",
                agent_response="Lovely; rye or wheat?", timestamp=datetime(2025, 5, 1, 10, tzinfo=timezone.utc))
    return segmentation_messages([page], None, [])


def _schema() -> dict:
    return segmentation_schema(1)


def test_background_calls_wait_and_are_corrected_by_usage(redis_client, budget_key, fake_llm) -> None:  # noqa: ANN001
    sleeps = Sleeps()
    budget = TokenBudget(redis_client, budget_key, TPM, max_wait=60, sleep=sleeps)
    client = LLMClient(
        Settings(openai_base_url=fake_llm.base_url, openai_api_key="k", llm_completion_reserve=500), budget=budget
    )
    messages = _messages()
    reserved = client.count_tokens(messages) + 500  # the prompt's estimate and room for the answer
    budget.reserve(TPM)  # another worker spent the minute's budget

    answer = client.structured(messages, AnyJSON, name="segmentation", schema=_schema())
    assert sleeps[-1] == pytest.approx(reserved / 100, abs=0.3), "waited for its reservation"
    used = answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert 0 < used < reserved
    assert committed(redis_client, budget_key) == pytest.approx(used / 100, abs=0.3), "corrected to the usage"

    # An answer to a user is never held, only charged.
    before = committed(redis_client, budget_key)
    n_sleeps = len(sleeps)
    text, usage = client.text([{"role": "user", "content": "Say hello to the user."}])
    assert text and len(sleeps) == n_sleeps
    assert committed(redis_client, budget_key) - before == pytest.approx(
        (usage.prompt_tokens + usage.completion_tokens) / 100, abs=0.1
    )


def test_rate_limited_call_raises_its_own_error_without_calling(redis_client, budget_key, fake_llm) -> None:  # noqa: ANN001
    budget = TokenBudget(redis_client, budget_key, TPM, max_wait=0, sleep=Sleeps())
    client = LLMClient(Settings(openai_base_url=fake_llm.base_url, openai_api_key="k"), budget=budget)
    budget.reserve(TPM)
    with pytest.raises(LLMRateLimited, match="budget"):
        client.structured(_messages(), AnyJSON, name="segmentation", schema=_schema())
    assert fake_llm.calls == 0


# -- what the workers do when the budget is spent --------------------------------------------------


def _turns(user: str, n: int) -> list[dict[str, str]]:
    return [
        {"user_id": user, "user_input": f"My sourdough starter number {i} needs rye flour and warmth",
         "agent_response": f"Feed starter {i} with rye flour twice a day and keep it warm."}
        for i in range(n)
    ]


def _exhaust(rt) -> None:  # noqa: ANN001
    assert rt.llm.budget is not None
    TokenBudget(rt.redis, rt.keys.llm_budget, rt.settings.llm_tokens_per_minute, max_wait=1e9, sleep=Sleeps()).reserve(
        rt.settings.llm_tokens_per_minute * 10
    )  # ten minutes committed: every call of these workers is refused


def test_an_exhausted_budget_delays_a_batch_without_falling_back(private_runtime, fake_llm) -> None:  # noqa: ANN001
    rt = private_runtime(llm_tokens_per_minute=TPM, llm_rate_limit_max_wait=0)
    user = "budget-user"
    keys = rt.keys.user(user)
    _exhaust(rt)
    rt.publisher.publish_many(_turns(user, rt.settings.short_term_capacity + rt.settings.promotion_batch_size))
    rt.pending.check(user, force=True)

    assert rt.promoter.run(user) == 0
    batch_id = rt.redis.lindex(keys.batches, 0)
    batch = state.read_batch(rt.redis, keys, batch_id)
    assert batch is not None and batch.state == "stored", "its pages are stored and retrievable meanwhile"
    assert batch.attempts == 0, "waiting for the budget is not a failed attempt"
    assert 0 < batch.not_before - time.time() <= 1.0
    assert "token budget" in rt.redis.hget(keys.batch(batch_id), "error")
    assert fake_llm.calls == 0
    counters = read_counters(rt.redis, rt.keys)
    assert "segment_fallbacks" not in counters and int(counters["llm_rate_limited"]) == 1
    assert rt.pending.check(user).pending == 1

    rt.redis.delete(rt.keys.llm_budget)  # the budget refills
    time.sleep(max(0.0, batch.not_before - time.time()) + 0.05)
    assert rt.promoter.run(user) == 1
    assert rt.redis.llen(keys.batches) == 0 and rt.redis.llen(keys.dead) == 0
    sources = {p["source"] for p in _segments(rt, user)}
    assert sources == {"llm"}, "analysed by the LLM once the budget allowed it"


def _segments(rt, user: str) -> list[dict]:  # noqa: ANN001
    from memoryos_workers.memory.segments import SEGMENTS

    return [h.payload for h in rt.store.scroll(SEGMENTS, filter={"user_id": user})]


def test_an_exhausted_budget_delays_persona_extraction_without_counting_attempts(private_runtime, fake_llm) -> None:  # noqa: ANN001
    rt = private_runtime(llm_tokens_per_minute=TPM, llm_rate_limit_max_wait=0, max_attempts=1)
    user = "budget-persona"
    keys = rt.keys.user(user)
    rt.publisher.publish_many(_turns(user, rt.settings.short_term_capacity + rt.settings.promotion_batch_size))
    rt.pending.check(user, force=True)
    assert rt.promoter.run(user) == 1  # budget still whole: segmented by the LLM
    _exhaust(rt)

    worker = rt.persona_worker
    for _ in range(3):  # with max_attempts=1, one counted failure would dead-letter at once
        assert worker.extract(user, force=True) == {"rate_limited": 1}
    retry_at = float(rt.redis.hget(keys.state, "persona_not_before"))
    assert 0 < retry_at - time.time() <= 1.0
    assert rt.redis.hget(keys.state, "persona_attempts") is None
    assert rt.redis.llen(keys.dead_persona) == 0
    assert rt.redis.zscore(rt.keys.sweep.of(user), user) <= retry_at, "the sweep comes back for it"

    rt.redis.delete(rt.keys.llm_budget)
    time.sleep(max(0.0, retry_at - time.time()) + 0.05)
    result = worker.extract(user)
    assert result.get("calls") == 1 and result.get("pages", 0) > 0, result
    assert rt.redis.hget(keys.state, "persona_not_before") is None
    assert rt.persona.get_profile(user) is not None


def test_a_call_larger_than_the_whole_budget_waits_for_a_full_one_then_pays_the_rest(redis_client, budget_key) -> None:  # noqa: ANN001
    sleeps = Sleeps()
    budget = TokenBudget(redis_client, budget_key, TPM, max_wait=5, sleep=sleeps)
    assert budget.fit(3 * TPM) == TPM
    assert budget.reserve(3 * TPM) == 0, "never refused for ever: it takes a whole (full) budget"
    with pytest.raises(RateLimited):
        budget.reserve(3 * TPM)  # the budget is spent: a full one is 60 s away, over max_wait
    budget.charge(3 * TPM - TPM)  # the correction after the call: the rest is paid
    assert committed(redis_client, budget_key) == pytest.approx(120, abs=0.3)

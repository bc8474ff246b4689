"""StubLLM and StubBudget: the real interfaces in-process, and real consumers driven by them.

The mid-term stage runs for real (real Redis counters, a real segment store in qdrant-client's
in-memory mode) with the stub embedder and the stub LLM; the LLM client runs for real against the
fake LLM over HTTP with the stub budget.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis
from qdrant_client import QdrantClient

from memoryos_workers.apps.generation import generate_response
from memoryos_workers.counters import read_counters
from memoryos_workers.embeddings.stub import StubEmbedder
from memoryos_workers.llm.base import LLM, Budget, LLMError, LLMNotConfigured, LLMRateLimited, Usage
from memoryos_workers.llm.client import LLMClient
from memoryos_workers.llm.stub import StubBudget, StubCall, StubLLM
from memoryos_workers.llm.token_budget import TokenBudget
from memoryos_workers.memory.heat import HeatParams
from memoryos_workers.memory.pages import PageStore
from memoryos_workers.memory.segment_stats import SegmentStats
from memoryos_workers.memory.segments import SegmentStore
from memoryos_workers.pipeline.answer_schemas import AnyJSON, segmentation_schema
from memoryos_workers.pipeline.mid_term import MidTerm
from memoryos_workers.pipeline.prompts import segmentation_messages
from memoryos_workers.testing.fake_llm import FakeLLM
from memoryos_workers.testing.responders import data_block, segmentation_answer
from memoryos_workers.vectorstore.server import QdrantServerStore
from producers.context import RetrievedContext
from producers.wire.keys import Keys
from schemas.memory import SegmentationResult
from schemas.settings import Settings
from schemas.turns import Page
from tests.conftest import PREFIX

T0 = datetime(2025, 5, 1, 9, 30, tzinfo=timezone.utc)
SINTRA = "We hiked the Sintra trails, then had pastries in the old town"


def pages(n: int = 3) -> list[Page]:
    return [
        Page(seq=i + 1, user_id="u1", turn_id=f"t{i}", user_input=f"I went HIKING in Sintra, day {i}",
             agent_response=f"Sintra trails are lovely, day {i}", timestamp=T0 + timedelta(minutes=i))
        for i in range(n)
    ]  # fmt: skip


def competent(call: StubCall) -> dict[str, Any]:
    """The fake LLM's competent segmentation answer, computed from the prompt's data block."""
    data = data_block({"messages": call.messages})
    assert data is not None and call.name == "segmentation"
    return segmentation_answer(data)


def wrong_page_count(call: StubCall) -> dict[str, Any]:
    answer = competent(call)
    answer["analysis"]["pages"] = answer["analysis"]["pages"][:-1]  # the last page missing: asked about again
    return answer


def nothing_usable(call: StubCall) -> dict[str, Any]:
    answer = competent(call)
    answer["analysis"]["pages"] = []  # no usable part: the whole call is asked again
    return answer


@pytest.fixture
def keys(redis_client: redis.Redis) -> Iterator[Keys]:
    keys = Keys(f"{PREFIX}-stub-{uuid.uuid4().hex[:8]}")
    yield keys
    redis_client.delete(*keys.stats.names)


def mid_term(settings: Settings, client: redis.Redis, keys: Keys, llm: LLM) -> tuple[MidTerm, StubEmbedder]:
    """A MidTerm over an in-memory store that already holds one segment about Sintra."""
    embedder = StubEmbedder()
    store = QdrantServerStore(QdrantClient(":memory:"), keys.prefix)
    segments = SegmentStore(store, embedder, settings)
    seed = SegmentationResult.model_validate(
        {"pages": [{"index": 0, "continues_previous": False, "chain_summary": ""}],
         "topics": [{"theme": "Sintra", "summary": SINTRA, "keywords": ["sintra"], "page_indices": [0]}]}
    )  # fmt: skip
    segments.write("u1", None, segments.plan("u1", "seed", seed), {})
    embedder.texts.clear()
    stats = SegmentStats(client, HeatParams.from_settings(settings))
    pages_store = PageStore(store, embedder)
    stage = MidTerm(settings, client, keys, embedder, llm, pages_store, segments, stats)
    return stage, embedder


def counters(client: redis.Redis, keys: Keys) -> dict[str, int]:
    return read_counters(client, keys)


# -- a pipeline stage driven by the stubs ----------------------------------------------------------


def test_analyse_uses_the_answer_normalised_and_counts_its_usage(settings, redis_client, keys) -> None:  # noqa: ANN001
    llm = StubLLM(competent)
    stage, embedder = mid_term(settings, redis_client, keys, llm)
    batch = pages()

    analysis = stage.analyse("u1", batch, None)

    assert analysis.source == "llm" and analysis.calls == 1
    assert [t.page_indices for t in analysis.result.topics] == [[0, 1, 2]]
    assert "hiking" in analysis.result.topics[0].keywords, "keywords normalised to lowercase"
    assert embedder.texts == [p.text() for p in batch], "the probe is the centroid of the page vectors"
    (call,) = llm.calls
    assert data_block({"messages": call.messages})["nearby_segments"] == [{"theme": "Sintra", "summary": SINTRA}]
    assert counters(redis_client, keys) == {
        "llm_calls": 1,
        "llm_prompt_tokens": analysis.prompt_tokens,
        "llm_completion_tokens": analysis.completion_tokens,
        # the same split by purpose, for /metrics' `purpose` label
        "llm_calls_segmentation": 1,
        "llm_prompt_tokens_segmentation": analysis.prompt_tokens,
        "llm_completion_tokens_segmentation": analysis.completion_tokens,
    }
    assert analysis.prompt_tokens > 0 and analysis.completion_tokens > 0


def test_a_partly_valid_answer_is_kept_and_only_the_rest_asked_again(settings, redis_client, keys) -> None:  # noqa: ANN001
    llm = StubLLM(competent, max_attempts=3)
    llm.queue([wrong_page_count(StubCall("segmentation", segmentation_messages(pages(), None, []), None))])
    stage, _ = mid_term(settings, redis_client, keys, llm)
    analysis = stage.analyse("u1", pages(), None)
    assert analysis.source == "llm" and analysis.calls == 2 and len(llm.calls) == 2 and llm.pending == 0
    asked_again = data_block({"messages": llm.calls[1].messages})
    assert [p["user"] for p in asked_again["pages"]] == [pages()[2].user_input], "only the missing page"
    assert all(p.source == "llm" for p in analysis.result.pages)
    assert counters(redis_client, keys)["llm_calls_retry"] == 1


def test_answers_with_nothing_usable_take_the_fallback(settings, redis_client, keys) -> None:  # noqa: ANN001
    llm = StubLLM(nothing_usable, max_attempts=3)
    stage, _ = mid_term(settings, redis_client, keys, llm)
    analysis = stage.analyse("u1", pages(), None)
    assert analysis.source == "fallback" and "MalformedOutput" in analysis.reason
    assert len(llm.calls) == 3
    assert analysis.result.topics[0].page_indices == [0, 1, 2], "one topic built without the LLM"
    seen = counters(redis_client, keys)
    assert seen["segment_fallbacks"] == 1 and seen["llm_calls"] == 3, "the failed attempts are counted"


def test_the_stage_reacts_to_each_outcome_of_the_interface(settings, redis_client, keys) -> None:  # noqa: ANN001
    llm = StubLLM()
    stage, _ = mid_term(settings, redis_client, keys, llm)
    llm.queue([LLMError("provider down")])
    assert stage.analyse("u1", pages(), None).reason == "provider down"
    llm.queue([LLMRateLimited("budget spent")])
    with pytest.raises(LLMRateLimited):  # not a failure: the batch waits for the budget
        stage.analyse("u1", pages(), None)
    llm.configured = False
    skipped = stage.analyse("u1", pages(), None)
    assert skipped.source == "fallback" and "no LLM configured" in skipped.reason
    assert len(llm.calls) == 2 and counters(redis_client, keys)["segment_fallbacks"] == 1


def test_generation_sends_the_query_and_returns_the_text() -> None:
    llm = StubLLM()
    llm.queue(["Glad the hike went well!"])
    context = RetrievedContext(user_id="u1", query="How was Sintra?")
    text, usage = generate_response("How was Sintra?", context, llm=llm)
    assert text == "Glad the hike went well!" and usage.calls == 1
    (call,) = llm.calls
    assert call.name == "text" and call.model is None and "How was Sintra?" in call.messages[-1]["content"]
    assert generate_response("again?", context, llm=llm)[0] == llm.text_answer, "unscripted: the default text"


# -- the stub's own rules --------------------------------------------------------------------------


def test_unscripted_structured_call_fails_loudly_not_as_an_llm_error() -> None:
    llm = StubLLM()
    with pytest.raises(LookupError, match="segmentation"):
        llm.structured([{"role": "user", "content": "x"}], SegmentationResult, name="segmentation")
    with pytest.raises(LLMNotConfigured):
        StubLLM(configured=False).text([{"role": "user", "content": "x"}])


def test_scripted_errors_carry_their_usage_and_totals_add_up() -> None:
    llm = StubLLM()
    llm.queue([LLMError("down"), "not json"])
    messages = [{"role": "user", "content": "x" * 40}]
    with pytest.raises(LLMError) as first:
        llm.structured(messages, SegmentationResult)
    assert first.value.usage == Usage(calls=1, prompt_tokens=10, completion_tokens=0)
    with pytest.raises(LLMError, match="MalformedOutput") as second:
        llm.structured(messages, SegmentationResult)
    assert second.value.usage is not None and second.value.usage.calls == 1
    assert llm.totals.calls == 2 and [c.name for c in llm.calls] == ["SegmentationResult"] * 2


# -- a real consumer of the budget: the LLM client over HTTP ----------------------------------------


def test_client_reserves_the_estimate_then_charges_the_difference(fake_llm: FakeLLM) -> None:
    budget = StubBudget()
    client = LLMClient(Settings(openai_base_url=fake_llm.base_url, openai_api_key="k", llm_completion_reserve=500),
                       budget=budget)  # fmt: skip
    messages = segmentation_messages(pages(), None, [])
    reserved = client.count_tokens(messages) + 500  # the prompt's estimate (before the call calibrates it)
    answer = client.structured(messages, AnyJSON, name="segmentation", schema=segmentation_schema(3))
    used = answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert budget.reserved == [reserved] and budget.charged == [used - reserved] and budget.spent == used

    capped = StubBudget(capacity=100)
    LLMClient(Settings(openai_base_url=fake_llm.base_url, openai_api_key="k"), budget=capped).structured(
        messages, AnyJSON, name="segmentation", schema=segmentation_schema(3)
    )
    assert capped.reserved == [100], "a call larger than the capacity reserves the capacity"


def test_a_refusing_budget_stops_the_call_before_http(fake_llm: FakeLLM) -> None:
    client = LLMClient(Settings(openai_base_url=fake_llm.base_url, openai_api_key="k"), budget=StubBudget(refuse=True))
    with pytest.raises(LLMRateLimited, match="refuses"):
        client.structured(segmentation_messages(pages(), None, []), SegmentationResult, name="segmentation")
    assert fake_llm.calls == 0


# -- congruence: the stubs offer exactly the real interfaces -----------------------------------------


def _params(function: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize(
    ("protocol", "real", "stub"),
    [(LLM, LLMClient, StubLLM), (Budget, TokenBudget, StubBudget)],
    ids=["llm", "budget"],
)
def test_stubs_and_adapters_have_the_protocols_signatures(protocol: type, real: type, stub: type) -> None:
    methods = [name for name, value in vars(protocol).items() if inspect.isfunction(value) and not name.startswith("_")]
    assert methods, protocol
    for name in methods:
        want = _params(getattr(protocol, name))
        assert _params(getattr(real, name)) == want, f"{real.__name__}.{name}"
        assert _params(getattr(stub, name)) == want, f"{stub.__name__}.{name}"


def test_stubs_and_adapters_are_instances_of_the_protocols(redis_client: redis.Redis) -> None:
    assert isinstance(LLMClient(Settings(openai_base_url="http://127.0.0.1:9/v1")), LLM)
    assert isinstance(StubLLM(), LLM)
    assert isinstance(TokenBudget(redis_client, f"{PREFIX}-stub-budget", 1000, max_wait=0), Budget)
    assert isinstance(StubBudget(), Budget)
    assert not isinstance(StubBudget(), LLM)

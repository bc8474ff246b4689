"""Prompts fit the model: a batch of long turns is split into calls that fit the window, a prompt the server
refuses as too long (its window smaller than configured) or an answer cut at the token limit makes the work
smaller at once and it succeeds, never repeating a request as it was and never counting as a failure.
Persona extraction reads as many pages as fit. Private runtimes driven in the test's thread; the fake LLM
over real HTTP with its window (`context_tokens`) and truncation (`truncate_at_tokens`) knobs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from memoryos_workers.counters import read_counters
from memoryos_workers.runtime import Runtime
from memoryos_workers.testing.fake_llm import FakeLLM
from memoryos_workers.testing.responders import data_block

# The fake's window and truncation knobs and the client that raises LLMContextOverflow / LLMTruncated come
# with the LLM-boundary half of issue 13 (branch wt13a); until both are on one branch these tests skip.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not hasattr(FakeLLM(), "truncate_at_tokens"), reason="needs the fake LLM's window knobs"),
]


def long_turns(user: str, n: int, chars: int, start: int = 0) -> list[dict[str, Any]]:
    filler = "The trail climbs through pine forest and granite boulders towards the ridge. "
    text = (filler * (chars // len(filler) + 1))[:chars]
    return [{"user_id": user, "user_input": f"Hike {i}: {text}", "agent_response": f"Answer {i}: {text}"}
            for i in range(start, start + n)]


def segmentation_requests(fake_llm) -> list[dict[str, Any]]:  # noqa: ANN001
    return [r for r in fake_llm.requests if "nearby_segments" in (data_block(r) or {})]


def persona_requests(fake_llm) -> list[dict[str, Any]]:  # noqa: ANN001
    return [r for r in fake_llm.requests if "current_profile" in (data_block(r) or {})]


def sent_pages(request: dict[str, Any]) -> list[str]:
    return [p["user"].split(":")[0] for p in data_block(request)["pages"]]


def stats(rt: Runtime) -> dict[str, int]:
    return read_counters(rt.redis, rt.keys)


def promote(rt: Runtime, user: str) -> int:
    rt.pending.check(user, force=True)
    return rt.promoter.run(user)


def assert_all_from_the_llm(rt: Runtime, user: str, n: int) -> None:
    pages = [h.payload for h in rt.pages.all_for_user(user)]
    assert len(pages) == n and {p["analysis"] for p in pages} == {"llm"}
    counted = stats(rt)
    assert counted.get("segment_fallbacks", 0) == 0 and counted.get("segment_fallback_pages", 0) == 0
    assert counted.get("batch_retries", 0) == 0 and counted.get("batch_dead_letters", 0) == 0


def test_a_batch_of_long_turns_is_split_into_calls_that_fit(private_runtime, fake_llm) -> None:  # noqa: ANN001
    rt = private_runtime(llm_context_tokens=4096, llm_completion_tokens=1024)
    fake_llm.context_tokens = 4096  # the server refuses what does not fit: nothing must be refused
    user = "long-turns"
    rt.publisher.publish_many(long_turns(user, 20, 1000))
    assert promote(rt, user) == 1

    requests = segmentation_requests(fake_llm)
    assert len(requests) >= 3, "10 pages of ~500 tokens do not fit one prompt of a 4,096-token window"
    assert [page for r in requests for page in sent_pages(r)] == [f"Hike {i}" for i in range(10)], "in order, once"
    assert fake_llm.statuses.get(400, 0) == 0
    assert all(r["max_tokens"] == 1024 for r in requests if "max_tokens" in r)
    assert_all_from_the_llm(rt, user, 10)
    for before, request in zip(requests, requests[1:], strict=False):  # each call sees the page before it
        assert data_block(request)["previous"]["user"].startswith(sent_pages(before)[-1] + ":")


def test_a_prompt_the_server_refuses_as_too_long_is_halved_at_once(private_runtime, fake_llm) -> None:  # noqa: ANN001
    rt = private_runtime()  # configured for the default 8,192-token window
    fake_llm.context_tokens = 1500  # ... but the model's window is smaller
    user = "overflow"
    rt.publisher.publish_many(long_turns(user, 20, 300))
    assert promote(rt, user) == 1

    requests = segmentation_requests(fake_llm)
    assert fake_llm.statuses.get(400, 0) >= 1, "the first prompt was refused"
    sent = [tuple(sent_pages(r)) for r in requests]
    assert len(set(sent)) == len(sent), "a refused request is never sent again as it was"
    assert len(sent[0]) == 10 and all(len(s) < 10 for s in sent[1:])
    answered = [s for s, r in zip(sent, requests, strict=True) if len(s) < 10]
    assert sorted(p for s in answered for p in s) == sorted(f"Hike {i}" for i in range(10))
    assert_all_from_the_llm(rt, user, 10)
    counted = stats(rt)
    assert counted["llm_calls_retry"] >= 2 and counted["llm_calls_segmentation"] == 1


def test_an_answer_cut_at_the_token_limit_keeps_its_whole_part(private_runtime, fake_llm) -> None:  # noqa: ANN001
    rt = private_runtime()
    user = "truncated"
    rt.publisher.publish_many(long_turns(user, 20, 200))
    whole = json.dumps(_answer_for(rt, fake_llm, user))
    fake_llm.truncate_at_tokens = len(whole) // 4 * 2 // 3  # about two thirds of the whole answer
    assert promote(rt, user) == 1

    first, *rest = segmentation_requests(fake_llm)
    assert len(sent_pages(first)) == 10 and rest, "the cut answer is continued by a smaller call"
    assert all(set(sent_pages(r)) < set(sent_pages(first)) for r in rest)
    assert sent_pages(rest[0]) == sent_pages(first)[-len(sent_pages(rest[0])):], "only what the cut answer missed"
    assert_all_from_the_llm(rt, user, 10)


def _answer_for(rt: Runtime, fake_llm, user: str) -> dict[str, Any]:  # noqa: ANN001
    """The fake's whole answer to the batch (computed as its responder does) to size the cut."""
    from memoryos_workers.pipeline.prompts import segmentation_messages
    from memoryos_workers.testing.responders import segmentation_answer
    from producers.wire import state

    keys = rt.keys.user(user)
    rt.pending.check(user, force=True)
    batch = state.read_batch(rt.redis, keys, rt.redis.lindex(keys.batches, 0))
    messages = segmentation_messages(batch.pages, None, [])
    return segmentation_answer(data_block({"messages": messages}))


def test_persona_reads_as_many_pages_as_fit_then_the_rest(private_runtime, fake_llm) -> None:  # noqa: ANN001
    rt = private_runtime(llm_context_tokens=2048, llm_completion_tokens=1024, persona_min_pages=1)
    fake_llm.context_tokens = 2048
    user = "persona-fit"
    rt.publisher.publish_many(long_turns(user, 40, 250))
    assert promote(rt, user) == 3
    first = rt.persona_worker.extract(user, force=True)  # every segment, hot or not: all 30 pages wait
    assert 1 <= first["pages"] < 30, "not every page fits one prompt of this window"
    while (done := rt.persona_worker.extract(user, force=True)).get("pages"):
        pass
    requests = persona_requests(fake_llm)
    read = [page for r in requests for page in sent_pages(r)]
    assert read == [f"Hike {i}" for i in range(30)], "every page read once, oldest first"
    assert fake_llm.statuses.get(400, 0) == 0
    assert all(p.payload["persona"] == "done" for p in rt.pages.all_for_user(user))
    assert done == {} or done.get("pages", 0) == 0


def test_persona_over_a_smaller_window_halves_and_never_counts_an_attempt(private_runtime, fake_llm) -> None:  # noqa: ANN001
    rt = private_runtime(persona_min_pages=1)
    user = "persona-overflow"
    rt.publisher.publish_many(long_turns(user, 30, 250))
    assert promote(rt, user) == 2
    fake_llm.context_tokens = 1500  # the model's window is smaller than configured
    out = rt.persona_worker.extract(user, force=True)
    assert 1 <= out["pages"] < 20 and "failed" not in out
    keys = rt.keys.user(user)
    assert rt.redis.hget(keys.state, "persona_attempts") is None, "an overflow is not a failed attempt"
    assert rt.redis.llen(keys.dead_persona) == 0
    requests = persona_requests(fake_llm)
    assert fake_llm.statuses.get(400, 0) >= 1
    sizes = [len(data_block(r)["pages"]) for r in requests]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes), "halved, never repeated"
    states = [p.payload["persona"] for p in rt.pages.all_for_user(user)]
    assert states.count("done") == out["pages"] and states.count("pending") == 20 - out["pages"]

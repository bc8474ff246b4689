"""Persona extraction coalesced, as at the defaults: one call per MEMORYOS_PERSONA_MIN_PAGES new pages, a
quiet user's pages read after MEMORYOS_PERSONA_MAX_DELAY at the latest, a flush ending the wait. Promotion,
the heat refresh and the extraction are driven in the test's thread on private runtimes (real Redis, the
embedded store, real embeddings, the fake LLM over HTTP), as the worker runs them."""

from __future__ import annotations

import time
from typing import Any

import pytest

from memoryos_workers.counters import read_counters
from memoryos_workers.runtime import Runtime
from memoryos_workers.testing.responders import data_block

pytestmark = pytest.mark.integration


def turns(user: str, start: int, n: int) -> list[dict[str, Any]]:
    return [{"user_id": user, "user_input": f"I love hiking trail number {i} in the Alps",
             "agent_response": f"The Alps trail {i} sounds great"} for i in range(start, start + n)]


def persona_requests(fake_llm) -> list[dict[str, Any]]:  # noqa: ANN001
    return [r for r in fake_llm.requests if "current_profile" in (data_block(r) or {})]


def drain(rt: Runtime, user: str) -> bool:
    """What the worker does after each publish: promote, then the heat refresh; True when it asked for the
    persona (then the persona task runs)."""
    rt.promoter.run(user)
    if rt.persona_worker.refresh_heat(user):
        rt.persona_worker.extract(user)
        return True
    return False


def test_one_persona_call_per_min_pages_new_pages(private_runtime, fake_llm) -> None:  # noqa: ANN001
    rt = private_runtime(persona_min_pages=30, persona_max_delay=600.0)
    user = "coalesce-user"
    keys = rt.keys.user(user)
    rt.publisher.publish_many(turns(user, 0, 10))  # fills short-term
    asked = []
    for step in range(1, 5):
        rt.publisher.publish_many(turns(user, 10 * step, 10))  # each overflows one batch of 10
        asked.append(drain(rt, user))
        if step == 1:
            due = float(rt.redis.hget(keys.state, "persona_due_at"))
            assert 590 < due - time.time() <= 600, "the first unread page waits at most the delay"
            assert rt.redis.zscore(rt.keys.sweep.of(user), user) <= due, "the sweep looks again by then"
            assert rt.pending.check(user).idle, "a coalescing wait is not work in flight"
    assert asked == [False, False, True, False]
    (request,) = persona_requests(fake_llm)
    assert len(data_block(request)["pages"]) == 30, "one call over every page that waited"
    pages = {h.payload["turn_id"]: h.payload["persona"] for h in rt.pages.all_for_user(user)}
    assert sorted(pages.values()) == ["done"] * 30 + ["pending"] * 10
    assert rt.redis.hget(keys.state, "persona_due_at") is not None, "the 10 new pages wait again"
    stats = read_counters(rt.redis, rt.keys)
    assert stats["llm_calls_persona"] == 1 and stats["llm_calls_segmentation"] == 4 and stats["llm_calls"] == 5


def test_a_quiet_users_pages_are_read_after_the_delay(private_runtime, fake_llm) -> None:  # noqa: ANN001
    rt = private_runtime(persona_min_pages=50, persona_max_delay=0.5)
    user = "quiet-user"
    keys = rt.keys.user(user)
    rt.publisher.publish_many(turns(user, 0, 20))
    assert drain(rt, user) is False and not persona_requests(fake_llm)
    status = rt.pending.check(user)
    assert status.idle and not status.persona_kicked and status.due is not None
    time.sleep(0.6)
    status = rt.pending.check(user)  # what the beat sweep runs once the user is due
    assert status.persona_kicked and status.persona_busy
    rt.persona_worker.extract(user)  # the task the check sent
    assert len(persona_requests(fake_llm)) == 1 and rt.persona.get_profile(user) is not None
    assert rt.redis.hget(keys.state, "persona_due_at") is None
    assert rt.pending.check(user).idle


def test_a_flush_ends_the_wait_once_every_batch_is_done(private_runtime, fake_llm) -> None:  # noqa: ANN001
    rt = private_runtime(persona_min_pages=50, persona_max_delay=600.0)
    user = "flush-user"
    rt.publisher.publish_many(turns(user, 0, 20))
    rt.publisher.publish_many(turns(user, 20, 5))  # 5 pages wait in the buffer for a batch
    status = rt.pending.check(user, force=True)  # a flush: the buffer becomes a batch first
    assert status.pending == 2 and not status.persona_kicked, "batches pending: the persona waits for them"
    assert drain(rt, user) is False
    status = rt.pending.check(user, force=True)
    assert status.pending == 0 and status.persona_kicked
    rt.persona_worker.extract(user)
    (request,) = persona_requests(fake_llm)
    assert len(data_block(request)["pages"]) == 15, "every promoted page, in one call"
    assert rt.pending.check(user, force=True).idle

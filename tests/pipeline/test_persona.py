"""Long-term persona: heat-triggered extraction, knowledge dedupe and capacity, failures, isolation."""

from __future__ import annotations

import json
import time

import pytest

from memoryos_workers.memory.pages import PAGES
from memoryos_workers.testing.fake_llm import Fault
from schemas.persona import Fact, ProfileUpdate, UserProfile

pytestmark = pytest.mark.integration


def _publish_batches(publisher, pending, user_id: str, n_batches: int, topic: str = "hiking", assistant="bot-a"):  # noqa: ANN001, ANN201
    cap = publisher.settings.short_term_capacity
    size = publisher.settings.promotion_batch_size
    turns = [
        {
            "user_id": user_id,
            "assistant_id": assistant,
            "user_input": f"I love {topic} number {i} in the mountains",
            "agent_response": f"{topic} sounds great ({i})",
        }
        for i in range(cap + n_batches * size)
    ]
    publisher.publish_many(turns)
    pending.wait_idle(user_id, timeout=60)


def persona_calls(llm) -> int:  # noqa: ANN001
    return sum(
        1 for r in llm.requests if (r.get("response_format") or {}).get("json_schema", {}).get("name") == "persona"
    )


def test_hot_segment_triggers_exactly_one_extraction(celery_worker, runtime, publisher, pending, user_id, fake_llm):  # noqa: ANN001
    _publish_batches(publisher, pending, user_id, 1)
    keys = runtime.keys.user(user_id)
    assert persona_calls(fake_llm) == 1
    pages = runtime.pages.all_for_user(user_id)
    assert pages and all(p.payload["persona"] == "done" for p in pages)
    profile = runtime.persona.get_profile(user_id)
    assert profile is not None and "hiking" in profile.summary
    facts = runtime.persona.list("user", user_id)
    # One fact per page came back; near-identical ones ("... number 1", "... number 2") are merged. The test
    # model's "The user said: I love ..." is stored in the third person, its reporting frame removed (the
    # post-check, persona_review.py and fact_form.py).
    assert 1 <= len(facts) <= len(pages) and all(f.text.startswith("The user loves hiking") for f in facts)
    # L_interaction reset: the analysed base equals the segment length, heat back under tau.
    lengths, base = runtime.redis.hgetall(keys.seg_len), runtime.redis.hgetall(keys.seg_lbase)
    assert lengths == base
    heats = runtime.segment_stats.heats(keys)
    assert all(h < runtime.settings.mid_term_heat_threshold for h in heats.values())
    # A second refresh with no new pages triggers nothing, even when visits make the segment hot.
    for sid in lengths:
        runtime.redis.hincrby(keys.seg_visit, sid, 10)
    assert runtime.persona_worker.refresh_heat(user_id) is False
    pending.wait_idle(user_id, timeout=30)
    assert persona_calls(fake_llm) == 1


def test_llm_budget_per_100_turns(celery_worker, runtime, publisher, pending, user_id, fake_llm) -> None:  # noqa: ANN001
    _publish_batches(publisher, pending, user_id, 9)
    pending.wait_idle(user_id, timeout=120)
    turns = publisher.settings.short_term_capacity + 9 * publisher.settings.promotion_batch_size
    assert fake_llm.calls <= 20 * turns / 100


def test_duplicate_facts_and_capacity(runtime, user_id) -> None:  # noqa: ANN001
    store = runtime.persona
    out = store.add_facts("user", user_id, None, [Fact(text="Maya's cat is called Pimenta", date="")], {})
    again = store.add_facts("user", user_id, None, [Fact(text="Maya's cat is called Pimenta.", date="2025-03-01")], {})
    assert out["added"] == 1 and again == {"added": 0, "refreshed": 1, "evicted": 0, "ids": out["ids"]}
    entries = store.list("user", user_id)
    assert len(entries) == 1 and entries[0].date == "2025-03-01"
    cap = runtime.settings.long_term_knowledge_capacity
    names = "Anna Boris Chen Dana Emil Fatima Gustav Hiro Ines Jonas".split()
    hobbies = [
        "plays the violin",
        "grows tomatoes",
        "collects stamps",
        "repairs old motorcycles",
        "speaks fluent Japanese",
        "bakes sourdough bread",
        "climbs frozen waterfalls",
        "writes science fiction",
        "breeds koi fish",
        "teaches yoga",
    ]
    texts_in = [f"{n} {h}" for n in names for h in hobbies][:cap]
    assert len(texts_in) == cap, "the test builds exactly `capacity` distinct facts"
    many = [Fact(text=t, date="") for t in texts_in]
    result = store.add_facts("user", user_id, None, many, {})
    assert result["added"] == cap and result["evicted"] == 1
    texts = [e.text for e in store.list("user", user_id)]
    assert len(texts) == cap
    assert "Maya's cat is called Pimenta" not in texts  # the oldest went first
    assert texts == texts_in


def _failing_persona(request):  # noqa: ANN001, ANN202
    if "current_profile" in json.dumps(request.get("messages")):
        return Fault.malformed()
    from memoryos_workers.testing.responders import default_responder

    return default_responder(request)


def test_failed_extraction_is_retried_then_dead_lettered(
    celery_worker, runtime, publisher, pending, user_id, fake_llm, monkeypatch
) -> None:  # noqa: ANN001
    """Nobody drives the retries by hand: wait_idle's checks (as the beat sweep's would) re-kick each one
    when its not_before comes, and the last attempt dead-letters the pages."""
    monkeypatch.setattr(runtime.settings, "retry_backoff_base", 0.2)
    monkeypatch.setattr(runtime.settings, "retry_backoff_max", 0.5)
    old = UserProfile(user_id=user_id, summary="A long and careful profile of this user. " * 5)
    runtime.persona.put_profile(old)
    fake_llm.responder = _failing_persona
    settings = runtime.settings
    keys = runtime.keys.user(user_id)
    _publish_batches(publisher, pending, user_id, 1)  # waits until the persona work is over, too
    dead = [json.loads(x) for x in runtime.redis.lrange(keys.dead_persona, 0, -1)]
    assert len(dead) == 1 and dead[0]["attempts"] == settings.max_attempts and "MalformedOutput" in dead[0]["error"]
    assert persona_calls(fake_llm) == settings.max_attempts * settings.llm_max_attempts
    assert runtime.persona.get_profile(user_id).summary == old.summary
    assert all(p.payload["persona"] == "dead" for p in runtime.pages.all_for_user(user_id))
    assert user_id in runtime.redis.zrange(runtime.keys.dead_index, 0, -1)
    assert runtime.redis.hmget(keys.state, "persona_attempts", "persona_not_before") == [None, None]


def test_a_persona_retry_waits_for_its_time_in_redis(
    celery_worker, runtime, publisher, pending, user_id, fake_llm, monkeypatch
) -> None:  # noqa: ANN001
    """The retry is scheduled on the user's state in Redis (not a Celery countdown): a new kick before
    its time does not call the LLM, and the sweep's check sends it once due."""
    monkeypatch.setattr(runtime.settings, "retry_backoff_base", 600.0)
    monkeypatch.setattr(runtime.settings, "retry_backoff_max", 600.0)
    monkeypatch.setattr("memoryos_workers.pipeline.persona_extraction.retry_delay", lambda attempt, **_: 300.0)
    fake_llm.responder = _failing_persona
    keys = runtime.keys.user(user_id)
    cap, size = publisher.settings.short_term_capacity, publisher.settings.promotion_batch_size
    publisher.publish_many([
        {"user_id": user_id, "user_input": f"I love hiking number {i} in the mountains", "agent_response": "nice"}
        for i in range(cap + size)
    ])
    deadline = time.time() + 60
    while runtime.redis.hget(keys.state, "persona_not_before") is None and time.time() < deadline:
        time.sleep(0.05)
    retry_at = float(runtime.redis.hget(keys.state, "persona_not_before"))
    assert 290 < retry_at - time.time() <= 300
    assert runtime.redis.zscore(runtime.keys.sweep.of(user_id), user_id) <= retry_at
    while runtime.redis.exists(keys.persona_lock):
        time.sleep(0.05)
    calls = persona_calls(fake_llm)

    assert runtime.persona_worker.extract(user_id) == {"deferred": 1}  # e.g. kicked by a new drain
    status = pending.check(user_id)
    assert status.persona_busy and not status.persona_kicked and not status.idle
    assert persona_calls(fake_llm) == calls

    from memoryos_workers.testing.responders import default_responder

    fake_llm.responder = default_responder  # the LLM is back
    runtime.redis.hset(keys.state, "persona_not_before", repr(time.time()))  # its time has come
    assert pending.check(user_id).persona_kicked
    pending.wait_idle(user_id, timeout=60)
    assert persona_calls(fake_llm) == calls + 1
    assert runtime.persona.get_profile(user_id) is not None
    assert runtime.redis.hmget(keys.state, "persona_attempts", "persona_not_before") == [None, None]
    assert all(p.payload["persona"] == "done" for p in runtime.pages.all_for_user(user_id))


def test_profile_never_shrinks_to_error_text(runtime, user_id) -> None:  # noqa: ANN001
    from memoryos_workers.pipeline.profile_merge import merge_profile

    old = UserProfile(user_id=user_id, summary="Maya is a data engineer in Lisbon who hikes and runs.")
    for bad in ["", "Error: Could not get response from LLM.", "Maya."]:
        merged = merge_profile(
            old, ProfileUpdate(summary=bad, traits=[]), user_id=user_id, now=1.0, llm_model="m", prompt_version="v"
        )
        assert merged.summary == old.summary


def test_users_and_assistants_isolated(runtime, user_id) -> None:  # noqa: ANN001
    other = user_id + "-other"
    store = runtime.persona
    store.add_facts("user", user_id, None, [Fact(text="The user's secret code word is pineapple", date="")], {})
    store.add_facts(
        "assistant", user_id, "bot-a", [Fact(text="The assistant promised to remind about pineapple", date="")], {}
    )
    probe = runtime.embedder.embed_query("pineapple code word")
    assert store.search("user", other, None, probe, 10) == []
    assert store.search("assistant", other, "bot-a", probe, 10) == []
    assert [e.user_id for e in store.search("assistant", user_id, "bot-a", probe, 10)] == [user_id]
    assert store.search("assistant", user_id, "bot-b", probe, 10) == []


def test_assistant_sharing_is_explicit(runtime, user_id, tmp_path) -> None:  # noqa: ANN001
    from memoryos_workers.memory.persona_store import PersonaStore

    shared = PersonaStore(
        runtime.store, runtime.embedder, runtime.settings.model_copy(update={"share_assistant_knowledge": True})
    )
    shared.add_facts("assistant", user_id, "bot-s", [Fact(text="The assistant prefers metric units", date="")], {})
    probe = runtime.embedder.embed_query("metric units")
    assert [e.text for e in shared.search("assistant", user_id + "-b", "bot-s", probe, 5)] == [
        "The assistant prefers metric units"
    ]
    assert runtime.persona.search("assistant", user_id + "-b", "bot-s", probe, 5) == []


def test_pages_persona_state_filter(runtime, user_id) -> None:  # noqa: ANN001
    assert runtime.store.count(PAGES, filter={"user_id": user_id, "persona": "pending"}) == 0


def test_persona_reads_in_process_and_over_rpc(celery_worker, runtime, publisher, pending, user_id, fake_llm) -> None:  # noqa: ANN001
    from memoryos_workers import in_process as long_term
    from producers import persona as rpc

    _publish_batches(publisher, pending, user_id, 1, assistant="bot-rpc")
    local = long_term.get_user_profile(user_id, runtime)
    assert local is not None
    assert rpc.get_user_profile(user_id, publisher=publisher) == local
    assert rpc.get_user_knowledge(user_id, publisher=publisher) == long_term.get_user_knowledge(user_id, runtime)
    mine = rpc.get_assistant_knowledge("bot-rpc", user_id, publisher=publisher)
    assert mine and all(e.user_id == user_id for e in mine)
    assert rpc.get_assistant_knowledge("bot-rpc", publisher=publisher) == []  # nothing shared by default
    assert rpc.get_user_profile(user_id + "-nobody", publisher=publisher) is None
    assert rpc.get_user_knowledge(user_id + "-nobody", publisher=publisher) == []
    with pytest.raises(ValueError, match="user_id"):
        rpc.get_user_knowledge("bad/user", publisher=publisher)

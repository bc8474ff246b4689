"""Export and forget a user (the worker side, ops.user_data, and the RPC client, producers.operations):
every tier, exactly once, and nothing of anyone else."""

from __future__ import annotations

import time

import pytest

from memoryos_workers.memory.persona_store import KNOWLEDGE
from memoryos_workers.memory.segments import SEGMENTS
from memoryos_workers.ops.user_data import collect_user_records, erase_user

pytestmark = pytest.mark.integration


def _publish(publisher, user_id: str, n: int) -> list[str]:  # noqa: ANN001
    return publisher.publish_many(
        [{"user_id": user_id, "user_input": f"{user_id} talks about gardening {i}", "agent_response": f"ok {i}"}
         for i in range(n)]
    )


def _vector_counts(runtime, user_id: str) -> dict[str, int]:  # noqa: ANN001
    return {
        "pages": runtime.pages.count(user_id),
        "segments": runtime.store.count(SEGMENTS, filter={"user_id": user_id}),
        "facts": runtime.store.count(KNOWLEDGE, filter={"user_id": user_id}),
        "profile": int(runtime.persona.get_profile(user_id) is not None),
    }


def test_export_lists_every_turn_once_and_forget_removes_only_that_user(
    celery_worker, runtime, publisher, pending, user_id, fake_llm  # noqa: ANN001
) -> None:
    other = user_id + "-b"
    ids = _publish(publisher, user_id, 37)
    other_ids = _publish(publisher, other, 25)
    pending.wait_idle(user_id, timeout=60)
    pending.wait_idle(other, timeout=60)
    records = list(collect_user_records(runtime, user_id))
    turns = [r for r in records if r["type"] == "turn"]
    assert [t["turn_id"] for t in turns] == ids
    assert [t["seq"] for t in turns] == list(range(1, 38))
    assert {t["tier"] for t in turns} == {"mid_term", "pending", "short_term"}
    assert not any("terms" in t for t in turns)  # the BM25 term ids are derived, not the user's data
    assert runtime.pages.term_counts(user_id, []) is not None  # stored pages carry them
    assert any(r["type"] == "segment" for r in records) and any(r["type"] == "profile" for r in records)
    assert any(r["type"] == "fact" for r in records)
    assert _vector_counts(runtime, user_id)["pages"] > 0

    removed = erase_user(runtime, user_id)
    assert removed["short_term"] == runtime.settings.short_term_capacity
    assert removed["pages"] + removed["pending"] + removed["short_term"] == 37
    assert removed["profile"] == 1 and removed["segments"] >= 1 and removed["facts"] >= 1
    assert list(collect_user_records(runtime, user_id)) == []
    assert _vector_counts(runtime, user_id) == {"pages": 0, "segments": 0, "facts": 0, "profile": 0}
    assert runtime.pages.term_counts(user_id, []) is None  # no page left to count a term in
    leftovers = [k for k in runtime.redis.scan_iter(match=f"{runtime.keys.prefix}:{{u:{user_id}}}:*")]
    assert sorted(k.rsplit(":", 1)[-1] for k in leftovers) <= ["epoch", "fence"]
    # Idempotent, and the other user is untouched.
    assert set(erase_user(runtime, user_id).values()) == {0}
    assert [t["turn_id"] for t in collect_user_records(runtime, other) if t["type"] == "turn"] == other_ids


def test_forget_during_inflight_promotion_does_not_bring_data_back(
    celery_worker, runtime, publisher, pending, user_id, fake_llm  # noqa: ANN001
) -> None:
    fake_llm.latency = 1.5  # the segmentation call is in flight while we forget
    _publish(publisher, user_id, 40)
    keys = runtime.keys.user(user_id)
    deadline = time.monotonic() + 20
    while not runtime.redis.exists(keys.lock) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runtime.redis.exists(keys.lock), "a promotion should be running"
    erase_user(runtime, user_id)
    fake_llm.latency = 0
    deadline = time.monotonic() + 30
    while (runtime.redis.exists(keys.lock) or runtime.redis.exists(keys.persona_lock)) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert _vector_counts(runtime, user_id) == {"pages": 0, "segments": 0, "facts": 0, "profile": 0}
    assert list(collect_user_records(runtime, user_id)) == []
    # The user can start afresh.
    _publish(publisher, user_id, 3)
    assert [t["seq"] for t in collect_user_records(runtime, user_id)] == [1, 2, 3]


def test_export_and_forget_over_rpc_match_the_local_calls(
    celery_worker, runtime, publisher, pending, user_id, fake_llm  # noqa: ANN001
) -> None:
    """For processes that cannot open the embedded store: the worker that owns it answers."""
    from producers import operations

    ids = _publish(publisher, user_id, 23)
    pending.wait_idle(user_id, timeout=60)
    remote = operations.export_user(user_id, publisher=publisher)
    local = list(collect_user_records(runtime, user_id))
    assert [r["turn_id"] for r in remote if r["type"] == "turn"] == ids
    assert [r["type"] for r in remote] == [r["type"] for r in local]

    with pytest.raises(ValueError, match="op: must be one of export, forget"):
        operations.call_admin("drop_everything", user_id, publisher=publisher, timeout=10)
    with pytest.raises(ValueError, match="user_id: 'x y' is not a valid id"):
        operations.forget_user("x y", publisher=publisher, timeout=10)
    kept = [r["turn_id"] for r in collect_user_records(runtime, user_id) if r["type"] == "turn"]
    assert kept == ids, "nothing changed"

    removed = operations.forget_user(user_id, publisher=publisher)
    assert removed["pages"] + removed["pending"] + removed["short_term"] == 23
    assert list(collect_user_records(runtime, user_id)) == []

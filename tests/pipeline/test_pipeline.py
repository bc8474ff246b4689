"""End to end: turns published to Redis end in the vector store, once each, in publish order."""

from __future__ import annotations

import threading

import pytest

from producers.wire import state


def stored_seqs(runtime, user_id: str) -> list[int]:  # noqa: ANN001
    return [hit.payload["seq"] for hit in runtime.pages.all_for_user(user_id)]


def all_seqs(runtime, user_id: str) -> list[int]:  # noqa: ANN001
    """Every turn of the user wherever it is: vector store, pending batches, buffer, short-term."""
    keys = runtime.keys.user(user_id)
    seqs = stored_seqs(runtime, user_id)
    for batch in state.batches(runtime.redis, keys):
        seqs += [p.seq for p in batch.pages]
    seqs += [p.seq for p in state.buffered(runtime.redis, keys)]
    seqs += [p.seq for p in state.short_term(runtime.redis, keys)]
    return seqs


def test_overflow_reaches_vector_store(celery_worker, runtime, publisher, pending, user_id, settings) -> None:  # noqa: ANN001
    n = settings.short_term_capacity + 2 * settings.promotion_batch_size
    for i in range(n):
        publisher.publish({"user_id": user_id, "user_input": f"question {i}", "agent_response": f"answer {i}"})
    pending.wait_idle(user_id, timeout=60)
    assert stored_seqs(runtime, user_id) == list(range(1, 2 * settings.promotion_batch_size + 1))
    stm = state.short_term(runtime.redis, runtime.keys.user(user_id))
    assert [p.seq for p in stm] == list(range(n - settings.short_term_capacity + 1, n + 1))
    hit = runtime.pages.all_for_user(user_id)[0]
    assert hit.payload["user_input"] == "question 0" and hit.payload["agent_response"] == "answer 0"
    assert hit.payload["user_id"] == user_id and hit.payload["turn_id"]


def test_concurrent_publishers_keep_each_turn_once_in_order(celery_worker, runtime, publisher, pending, user_id):  # noqa: ANN001
    per_thread = 50
    published: list[str] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        for i in range(per_thread):
            tid = publisher.publish({"user_id": user_id, "user_input": f"t{t} m{i}", "agent_response": "ok"})
            with lock:
                published.append(tid)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    pending.wait_idle(user_id, timeout=120, flush=True)
    seqs = all_seqs(runtime, user_id)
    assert sorted(seqs) == list(range(1, 4 * per_thread + 1))
    assert seqs == sorted(seqs), "pages must stay in the order the publish script sequenced them"
    hits = runtime.pages.all_for_user(user_id)
    keys = runtime.keys.user(user_id)
    turn_ids = [h.payload["turn_id"] for h in hits] + [p.turn_id for p in state.short_term(runtime.redis, keys)]
    assert sorted(turn_ids) == sorted(published)
    # Within each thread, its own turns keep their publish order.
    text_by_seq = {h.payload["seq"]: h.payload["user_input"] for h in hits}
    text_by_seq.update({p.seq: p.user_input for p in state.short_term(runtime.redis, keys)})
    for t in range(4):
        mine = [int(text.split("m")[1]) for _, text in sorted(text_by_seq.items()) if text.startswith(f"t{t} ")]
        assert mine == list(range(per_thread))


@pytest.mark.parametrize("extra", ["capacity-1", "capacity", "capacity+1", "3x"])
def test_overflow_boundaries(extra, celery_worker, runtime, publisher, pending, user_id, settings) -> None:  # noqa: ANN001
    cap = settings.short_term_capacity
    n = {"capacity-1": cap - 1, "capacity": cap, "capacity+1": cap + 1, "3x": 3 * cap}[extra]
    publisher.publish_many(
        [{"user_id": user_id, "user_input": f"q{i}", "agent_response": f"a{i}"} for i in range(n)]
    )
    keys = runtime.keys.user(user_id)
    stm = [p.seq for p in state.short_term(runtime.redis, keys)]
    assert stm == list(range(max(1, n - cap + 1), n + 1))
    overflow = max(0, n - cap)
    buffered = [p.seq for p in state.buffered(runtime.redis, keys)]
    batched = [p.seq for b in state.batches(runtime.redis, keys) for p in b.pages]
    assert len(buffered) + len(batched) + len(stored_seqs(runtime, user_id)) == overflow
    pending.wait_idle(user_id, timeout=60, flush=True)
    assert stored_seqs(runtime, user_id) == list(range(1, overflow + 1))
    assert all_seqs(runtime, user_id) == list(range(1, n + 1))


def test_same_turn_id_is_stored_once(celery_worker, runtime, publisher, pending, user_id, settings) -> None:  # noqa: ANN001
    n = settings.short_term_capacity + settings.promotion_batch_size
    turns = [{"user_id": user_id, "turn_id": f"t-{i}", "user_input": f"q{i}", "agent_response": "a"} for i in range(n)]
    assert publisher.publish_many(turns) == [f"t-{i}" for i in range(n)]
    assert publisher.publish_many(turns) == [f"t-{i}" for i in range(n)]  # a client retrying the whole bulk
    publisher.publish(turns[0])
    pending.wait_idle(user_id, timeout=60, flush=True)
    assert all_seqs(runtime, user_id) == list(range(1, n + 1))
    assert runtime.pages.count(user_id) == settings.promotion_batch_size


def test_users_never_see_each_other(celery_worker, runtime, publisher, pending, settings) -> None:  # noqa: ANN001
    users = ["iso-a-" + settings.key_prefix, "iso-b-" + settings.key_prefix]
    n = settings.short_term_capacity + settings.promotion_batch_size
    for user in users:
        publisher.publish_many(
            [{"user_id": user, "user_input": f"{user} says {i}", "agent_response": "same reply"} for i in range(n)]
        )
    for user in users:
        pending.wait_idle(user, timeout=60, flush=True)
    for user in users:
        hits = runtime.pages.all_for_user(user)
        assert hits and all(h.payload["user_id"] == user for h in hits)
        assert all(h.payload["user_input"].startswith(user) for h in hits)
        near = runtime.store.query(
            "pages", vector=runtime.embedder.embed_query("same reply"), filter={"user_id": user}, limit=50
        )
        assert near and {h.payload["user_id"] for h in near} == {user}

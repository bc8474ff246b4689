"""The one memory interface: the same cases through `LocalMemory` (this process owns the store) and
`RemoteMemory` (over the retrieval lane and the operators' RPC) give equal answers: contexts, persona,
export, inspect, dead letters, forget, and the same errors for the same bad input. As qdrant-client runs
one suite against its local and remote clients.

Both memories read the session's store: the local one through the session's runtime, the remote one
through a worker of this process (a retrieval lane of its own, and the session's Celery worker for
operators' commands). The remote one comes from `open_memory`, which finds the store held and says so.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from memoryos_workers.interface import LocalMemory, Memory, RemoteMemory, open_memory
from memoryos_workers.ops import fact_ops
from memoryos_workers.pipeline.locks import UserLock
from producers.errors import FactsBusy
from producers.retrieve import client_for

pytestmark = pytest.mark.integration

PLACES = ["the Alps", "Lisbon", "the Lake District", "Kyoto", "the Atlas mountains"]


def _turns(user_id: str) -> list[dict[str, Any]]:
    """Thirty exchanges over June 2025, two assistants, two channels: enough for segments, a profile and
    facts, and for the time and metadata filters to choose."""
    return [
        {
            "user_id": user_id,
            "assistant_id": "travel-bot" if i % 3 else "other-bot",
            "user_input": f"On trip {i} I went hiking in {PLACES[i % 5]} with my sister Ana, and Ana and I saw "
                          f"{i + 2} lakes.",
            "agent_response": f"Hiking in {PLACES[i % 5]} with Ana sounds wonderful!",
            "timestamp": f"2025-06-{i % 28 + 1:02d}T10:00:00+00:00",
            "turn_id": f"{user_id}-t{i}",
            "metadata": {"channel": "web" if i % 2 else "app"},
        }
        for i in range(30)
    ]


@pytest.fixture(scope="module")
def memories(runtime, celery_worker, redis_client) -> Iterator[tuple[LocalMemory, Memory, list[str]]]:  # noqa: ANN001
    """(local, remote, [twin users a and b with the same dialogue]), all background work done."""
    from memoryos_workers.worker.retrieval_server import RetrievalServer

    lane = RetrievalServer(runtime, threads=2).start()
    deadline = time.monotonic() + 60
    while client_for(runtime.publisher).lane()["retrieval_servers"] < 1:
        assert time.monotonic() < deadline, "the retrieval server did not announce itself"
        time.sleep(0.05)
    local = LocalMemory(runtime)
    remote = open_memory(runtime.settings, worker=False)  # the session's runtime holds the store
    twins = [f"cg-{side}-{uuid.uuid4().hex[:8]}" for side in "ab"]
    for user in twins:
        local.publish(_turns(user))
    for user in twins:
        local.analyse(user, timeout=240)
    yield local, remote, twins
    lane.stop()


def test_the_factory_reads_over_rpc_when_another_runtime_holds_the_store(memories) -> None:  # noqa: ANN001
    local, remote, _ = memories
    assert isinstance(remote, RemoteMemory) and remote.mode == "remote"
    assert remote.describe() == {"reads": "rpc", "workers": "external", "store": "embedded"}
    assert local.readiness() == remote.readiness() == {"redis": "ok", "vector_store": "ok"}


def test_the_factory_reads_here_when_it_can_open_the_store(tmp_path, settings) -> None:  # noqa: ANN001
    """A store of its own: local reads, and no in-process worker when the deployment has its own."""
    mine = settings.model_copy(update={"data_dir": tmp_path / "own", "external_workers": True})
    memory = open_memory(mine)
    try:
        assert isinstance(memory, LocalMemory) and not memory.runs_worker
        assert memory.describe() == {"reads": "in-process", "workers": "external", "store": "embedded"}
    finally:
        memory.close()


REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("Where did I go hiking with Ana?", {}),
    ("Where did I go hiking with Ana?", {"top_k": 3}),
    ("How many lakes did we see in Kyoto?", {"max_tokens": 300}),
    ("How many lakes did we see in Kyoto?", {"max_tokens": 0, "top_k": 20}),
    ("What did I do in Lisbon?", {"filters": {"since": "2025-06-05", "until": "2025-06-12"}, "max_tokens": 0}),
    ("What did I do yesterday?", {"now": "2025-06-09T18:00:00+00:00"}),
    ("What do you know about hiking?", {"assistant_id": "other-bot"}),
    ("Which lakes?", {"filters": {"metadata": {"channel": "web"}, "assistant_id": "travel-bot"}}),
]


@pytest.mark.parametrize(("query", "options"), REQUESTS, ids=[f"case{i}" for i in range(len(REQUESTS))])
def test_retrieval_gives_the_same_context(memories, query: str, options: dict[str, Any]) -> None:  # noqa: ANN001
    local, remote, (user, _) = memories
    mine = local.retrieve_for(user, query, **options)
    theirs = remote.retrieve_for(user, query, deadline_ms=30_000, on_deadline="raise", **options)
    assert not theirs.degraded
    assert mine.pages or mine.short_term, "the case retrieves something"
    assert _context(theirs) == _context(mine)
    assert theirs.to_prompt() == mine.to_prompt()


def test_persona_reads_are_the_same(memories) -> None:  # noqa: ANN001
    local, remote, (user, _) = memories
    mine, theirs = local.persona(user, "travel-bot"), remote.persona(user, "travel-bot")
    assert mine.profile is not None and mine.user_knowledge, "the persona was extracted"
    assert theirs.model_dump(mode="json") == mine.model_dump(mode="json")
    assert [e.model_dump() for e in remote.facts("assistant", None, "travel-bot")] == [
        e.model_dump() for e in local.facts("assistant", None, "travel-bot")
    ]


def test_operators_reads_are_the_same(memories) -> None:  # noqa: ANN001
    local, remote, (user, _) = memories
    assert _rounded(list(remote.export(user))) == _rounded(list(local.export(user)))
    view = local.inspect(user)
    assert view["pages"] >= 15 and view["segments"]
    assert _rounded(remote.inspect(user)) == _rounded(view)
    assert remote.dead_letters(user) == local.dead_letters(user) == []
    assert remote.replay(user) == local.replay(user) == {user: {"batches": 0, "persona_pages": 0}}
    assert remote.users(prefix="cg-", limit=1000) == local.users(prefix="cg-", limit=1000)


BAD: list[tuple[str, Callable[[Memory], Any]]] = [
    ("bad user", lambda m: m.retrieve_for("a/b", "q")),
    ("blank query", lambda m: m.retrieve_for("u1", "   ")),
    ("top_k", lambda m: m.retrieve_for("u1", "q", top_k=0)),
    ("budget", lambda m: m.retrieve_for("u1", "q", max_tokens=5)),
    ("since", lambda m: m.retrieve_for("u1", "q", filters={"since": "last spring"})),
    ("unknown filter", lambda m: m.retrieve_for("u1", "q", filters={"colour": "blue"})),
    ("unknown option", lambda m: m.retrieve_for("u1", "q", colour="blue")),
    ("now", lambda m: m.retrieve_for("u1", "q", now=12)),
    ("deadline", lambda m: m.retrieve_for("u1", "q", on_deadline="wait")),
    ("profile", lambda m: m.profile("a/b")),
    ("facts user", lambda m: m.facts("user", "a b")),
    ("facts kind", lambda m: m.facts("robots", "u1")),  # type: ignore[arg-type]
    ("facts assistant", lambda m: m.facts("assistant", "u1", "bad assistant")),
    ("export", lambda m: list(m.export("../etc"))),
    ("forget", lambda m: m.forget("a/b")),
    ("inspect", lambda m: m.inspect("x" * 129)),
    ("fact id", lambda m: m.correct_fact("u1", "nope", text="x", by="key:k")),
    ("fact text", lambda m: m.add_fact("u1", "   ", by="key:k")),
    ("fact by", lambda m: m.add_fact("u1", "Lea likes tea.", by="")),
    ("fact edit", lambda m: m.correct_fact("u1", "f0123456789", by="key:k")),
    ("unknown fact", lambda m: m.delete_fact("u1", "f0123456789", by="key:k")),
    ("fact history", lambda m: m.list_facts("u1", history="yes")),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("case", BAD, ids=[name for name, _ in BAD])
def test_bad_input_is_the_same_error_and_changes_nothing(memories, case) -> None:  # noqa: ANN001
    local, remote, (user, _) = memories
    before = local.inspect(user)["pages"]
    errors = []
    for memory in (local, remote):
        with pytest.raises(ValueError) as raised:
            case[1](memory)
        errors.append(str(raised.value))
    assert errors[0] == errors[1] and ":" in errors[0], errors
    assert local.inspect(user)["pages"] == before


def test_people_correct_facts_the_same_way_through_both(memories) -> None:  # noqa: ANN001
    """Twins: the same edits, on one here and on the other over RPC; the same answers (each naming its
    fact_id), the same history, each change recorded with who made it."""
    local, remote, twins = memories
    answers = []
    for memory, user in zip((local, remote), twins, strict=True):
        added = memory.add_fact(user, "Ana lives in Porto.", by="key:k1")
        corrected = memory.correct_fact(user, added.fact_id, text="Ana lives in Braga.", by="person:ana")
        pinned = memory.pin_fact(user, corrected.fact_id, by="person:ana")
        extra = memory.add_fact(user, "Ana plays the cello.", pinned=True, by="key:k1")
        removed = memory.delete_fact(user, extra.fact_id, by="key:k1")
        with pytest.raises(ValueError, match="fact_id"):
            memory.correct_fact(user, added.fact_id, text="Ana lives in Faro.", by="key:k1")  # already replaced
        history = memory.list_facts(user, history=True)
        current = memory.list_facts(user)
        assert all(e.fact_id for e in [added, corrected, pinned, removed, *history])
        old = next(e for e in history if e.fact_id == added.fact_id)
        assert old.status == "superseded" and old.superseded_by == corrected.fact_id
        assert [(c.action, c.by) for c in old.changes] == [("added", "key:k1"), ("corrected", "person:ana")]
        assert pinned.pinned and pinned.origin == "person" and removed.fact_id not in {e.fact_id for e in history}
        assert corrected.fact_id in {e.fact_id for e in current} and added.fact_id not in {e.fact_id for e in current}
        answers.append([_edit(e) for e in (added, corrected, pinned, removed)] + sorted(_edit(e) for e in history))
    assert answers[0] == answers[1]


def _edit(entry: Any) -> tuple:
    """What must agree between twins (ids and times differ with the user)."""
    return (entry.text, entry.status, entry.pinned, entry.origin, entry.origin_by,
            tuple((c.action, c.by) for c in entry.changes))


def test_an_edit_past_a_running_extraction_is_the_same_facts_busy_through_both(memories, monkeypatch) -> None:  # noqa: ANN001
    """The persona lock held (as an extraction holds it): both raise FactsBusy with its retry_after (over RPC the
    reply carries the type, not a message to recognise), and nothing was written. The session's worker runs in
    this process, so the short wait applies to the remote edit too."""
    local, remote, _ = memories
    monkeypatch.setattr(fact_ops, "EDIT_WAIT_S", 0.2)
    user = f"cg-busy-{uuid.uuid4().hex[:8]}"
    keys = local.runtime.keys.user(user)
    lock = UserLock(local.runtime.redis, keys, local.runtime.settings.lock_ttl, lock_key=keys.persona_lock)
    assert lock.acquire()
    raised = []
    try:
        for memory in (local, remote):
            with pytest.raises(FactsBusy) as busy:
                memory.add_fact(user, "Ana lives in Porto.", by="key:k1")
            raised.append((type(busy.value), str(busy.value), busy.value.retry_after))
    finally:
        lock.release()
    assert raised[0] == raised[1], raised
    kind, message, retry_after = raised[0]
    assert kind is FactsBusy and retry_after == fact_ops.RETRY_AFTER_S and "nothing was changed" in message
    assert local.list_facts(user, history=True) == remote.list_facts(user, history=True) == []


def test_forget_removes_the_same_from_twin_users(memories) -> None:  # noqa: ANN001
    """Twins with the same dialogue: one forgotten here, one over RPC; the same tiers emptied, nothing left."""
    local, remote, (a, b) = memories
    removed_a, removed_b = local.forget(a), remote.forget(b)
    assert removed_a == removed_b and removed_a.get("pages", 0) >= 15, (removed_a, removed_b)
    for user in (a, b):
        assert list(local.export(user)) == list(remote.export(user)) == []


def _context(context: Any) -> dict[str, Any]:
    return context.model_dump(mode="json", exclude={"timings_ms"})


def _rounded(value: Any) -> Any:
    """Heat is computed when read (recency from the clock): equal to a few decimals between two reads."""
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value

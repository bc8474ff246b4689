"""A person's edit and extraction take the same persona lock, and an edit respects forget's epoch: a running
extraction cannot overwrite a person's correction, and an edit that waited while the user was forgotten writes
nothing. Deterministic: the test holds the lock itself."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from memoryos_workers.memory import fact_changes
from memoryos_workers.ops import fact_ops
from memoryos_workers.pipeline.locks import UserLock

pytestmark = pytest.mark.integration


def _held(runtime, user_id: str) -> UserLock:  # noqa: ANN001
    keys = runtime.keys.user(user_id)
    lock = UserLock(runtime.redis, keys, runtime.settings.lock_ttl, lock_key=keys.persona_lock)
    assert lock.acquire()
    return lock


def _in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _add(runtime, user_id: str, text: str) -> Any:  # noqa: ANN001, ANN401
    return fact_ops.run_fact_op(runtime, "fact_add", user_id, {"text": text, "by": "person:lea"})


def test_an_edit_waits_while_an_extraction_holds_the_lock(runtime, user_id) -> None:  # noqa: ANN001
    lock = _held(runtime, user_id)
    try:
        thread, out = _in_thread(lambda: _add(runtime, user_id, "Lea lives in Braga."))
        thread.join(0.5)
        assert thread.is_alive() and runtime.persona.list("user", user_id) == [], "nothing written while held"
    finally:
        lock.release()
    thread.join(10)
    assert out["value"]["text"] == "Lea lives in Braga."
    assert [e.text for e in runtime.persona.list("user", user_id)] == ["Lea lives in Braga."]
    runtime.persona.delete_user(user_id)


def test_an_edit_that_waited_too_long_is_busy_and_changes_nothing(runtime, user_id, monkeypatch) -> None:  # noqa: ANN001
    fact = fact_changes.add(runtime.persona, user_id, "Lea lives in Porto.", by="person:lea")
    monkeypatch.setattr(fact_ops, "EDIT_WAIT_S", 0.2)
    lock = _held(runtime, user_id)
    try:
        with pytest.raises(fact_ops.FactsBusy, match="retry in"):
            fact_ops.run_fact_op(runtime, "fact_correct", user_id,
                                 {"fact_id": fact.fact_id, "text": "Lea lives in Braga.", "by": "person:lea"})
    finally:
        lock.release()
    assert [(e.text, e.current) for e in runtime.persona.list("user", user_id, history=True)] == [
        ("Lea lives in Porto.", True)]
    runtime.persona.delete_user(user_id)


def test_an_extraction_does_not_run_while_a_person_edits(runtime, user_id) -> None:  # noqa: ANN001
    kick = runtime.keys.user(user_id).persona_kick
    with fact_ops.persona_locked(runtime, user_id):
        runtime.redis.set(kick, "1")  # a drain asked for an extraction meanwhile
        assert runtime.persona_worker.extract(user_id, force=True) == {}
        assert runtime.redis.exists(kick), "the extraction found the lock held and left the request"
    # Once the edit is done the request is sent again; with the session's Celery worker running, the worker's
    # extraction may hold the lock when this one starts (extract() then answers {} at once): ask until it ran.
    deadline = time.monotonic() + 30
    while runtime.redis.exists(kick) and time.monotonic() < deadline:
        runtime.persona_worker.extract(user_id, force=True)
        time.sleep(0.1)
    assert not runtime.redis.exists(kick), "once the edit is done, the extraction runs"


def test_an_edit_that_waited_through_forget_writes_nothing(runtime, user_id) -> None:  # noqa: ANN001
    lock = _held(runtime, user_id)
    try:
        thread, out = _in_thread(lambda: _add(runtime, user_id, "Lea lives in Braga."))
        time.sleep(0.3)
        runtime.redis.incr(runtime.keys.user(user_id).epoch)  # what forget does first
    finally:
        lock.release()
    thread.join(10)
    assert isinstance(out.get("error"), fact_changes.FactNotFound), out
    assert runtime.persona.list("user", user_id, history=True) == []
    runtime.redis.delete(runtime.keys.user(user_id).epoch)

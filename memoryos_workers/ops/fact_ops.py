"""A person's edits of a user's facts (list with history, add, correct, delete, pin), run where the store is:
`LocalMemory` directly, a worker for a `RemoteMemory` (the operator_command task carries the params).

Every answer names the fact's `fact_id`; every change is recorded on the fact with who made it (`by`: the
API key, the person signed in to the inspector, or the caller of the Python interface) and when.

An edit holds the user's persona lock, the one extraction holds from reading the facts it shows the model to
writing what the model answered: a running extraction cannot overwrite a person's correction (it would have
shown the model the old fact and superseded it by id), and the next one is shown the corrected fact. An edit
waits for a running extraction at most EDIT_WAIT_S, then answers FactsBusy (retryable; nothing was changed).
It also respects forget's epoch: an edit that waited while the user was forgotten writes nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from memoryos_workers.memory import fact_changes
from memoryos_workers.pipeline.locks import UserLock
from memoryos_workers.runtime import Runtime
from producers.errors import FactsBusy  # there, so a RemoteMemory raises it too
from producers.wire.contract import EXTRACT_PERSONA_TASK
from schemas.persona import KnowledgeEntry
from schemas.turns import check_text

FACT_ID = re.compile(r"^f[0-9a-f]{10}$")
MAX_BY_CHARS = 200
EDIT_WAIT_S = 10.0  # a persona call usually ends within this; a longer one gets a retryable answer
RETRY_AFTER_S = 5
_POLL_S = 0.05


BUSY = "user_id: the user's memory is being updated by an extraction"


@contextmanager
def persona_locked(rt: Runtime, user_id: str, wait: float | None = None) -> Iterator[None]:
    """Holds the user's persona lock around an edit (see the module docstring). The epoch is read before
    waiting: if forget ran meanwhile, the edit raises FactNotFound and writes nothing. A forget that starts
    while the edit holds the lock waits for it and sweeps what it wrote."""
    keys = rt.keys.user(user_id)
    epoch = rt.redis.get(keys.epoch)
    lock = UserLock(rt.redis, keys, rt.settings.lock_ttl, lock_key=keys.persona_lock)
    deadline = time.monotonic() + (EDIT_WAIT_S if wait is None else wait)
    while not lock.acquire():
        if time.monotonic() >= deadline:
            raise FactsBusy(f"{BUSY}; nothing was changed; retry in {RETRY_AFTER_S} s", retry_after=RETRY_AFTER_S)
        time.sleep(_POLL_S)
    try:
        if rt.redis.get(keys.epoch) != epoch:
            raise fact_changes.FactNotFound("fact_id: no fact for this user: it was forgotten while the edit "
                                            "waited; nothing was changed")
        yield
    finally:
        lock.release()
        # An extraction asked for while the edit held the lock found it held and left its request (the kick):
        # send it again, so it does not wait for the kick to go stale.
        if rt.redis.exists(keys.persona_kick):
            rt.publisher.sender.send(EXTRACT_PERSONA_TASK, user_id)


def check_fact_id(value: Any) -> str:
    if not isinstance(value, str) or not FACT_ID.match(value):
        raise ValueError("fact_id: must be 'f' and 10 hex digits, as the fact lists name it")
    return value


def check_by(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_BY_CHARS or "\x00" in value:
        raise ValueError(f"by: who makes the change, 1-{MAX_BY_CHARS} characters")
    return value


def _pinned(value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ValueError("pinned: must be true or false")
    return value


def _text(rt: Runtime, value: Any, required: bool) -> str | None:
    if value is None and not required:
        return None
    return check_text("text", value, rt.settings.max_text_chars)  # type: ignore[no-any-return]


def run_fact_op(rt: Runtime, op: str, user_id: str, params: dict[str, Any]) -> Any:
    """`op`: facts_list, fact_add, fact_correct, fact_delete. Checks every param before anything changes."""
    store = rt.persona
    if op == "facts_list":
        history = params.get("history", False)
        if not isinstance(history, bool):
            raise ValueError("history: must be true or false")
        return [e.model_dump(mode="json") for e in store.list("user", user_id, history=history)]
    edit = _edit(rt, op, user_id, params)
    with persona_locked(rt, user_id):
        entry = edit()
    return entry.model_dump(mode="json")


def _edit(rt: Runtime, op: str, user_id: str, params: dict[str, Any]) -> Callable[[], KnowledgeEntry]:
    """The edit, its params all checked (before any lock is taken or anything changes)."""
    store = rt.persona
    by = check_by(params.get("by"))
    if op == "fact_add":
        text = _text(rt, params.get("text"), True)
        pinned = bool(_pinned(params.get("pinned")))
        return lambda: fact_changes.add(store, user_id, str(text), pinned=pinned, by=by)
    if op == "fact_correct":
        fact_id, text, pin = check_fact_id(params.get("fact_id")), _text(rt, params.get("text"), False), _pinned(
            params.get("pinned"))
        if text is None and pin is None:
            raise ValueError("text: give a new text, or pinned, or both")
        return lambda: fact_changes.correct(store, user_id, fact_id, text=text, pinned=pin, by=by)
    if op == "fact_delete":
        fact_id = check_fact_id(params.get("fact_id"))
        return lambda: fact_changes.delete(store, user_id, fact_id, by=by)
    raise ValueError(f"op: {op!r} is not a fact operation")


FACT_OPS = ("facts_list", "fact_add", "fact_correct", "fact_delete")

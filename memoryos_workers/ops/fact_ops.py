"""A person's edits of a user's facts (list with history, add, correct, delete, pin), run where the store is:
`LocalMemory` directly, a worker for a `RemoteMemory` (the operator_command task carries the params).

Every answer names the fact's `fact_id`; every change is recorded on the fact with who made it (`by`: the
API key, the person signed in to the inspector, or the caller of the Python interface) and when.
"""

from __future__ import annotations

import re
from typing import Any

from memoryos_workers.memory import fact_changes
from memoryos_workers.runtime import Runtime
from schemas.turns import check_text

FACT_ID = re.compile(r"^f[0-9a-f]{10}$")
MAX_BY_CHARS = 200


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
    by = check_by(params.get("by"))
    if op == "fact_add":
        text = _text(rt, params.get("text"), True)
        entry = fact_changes.add(store, user_id, str(text), pinned=bool(_pinned(params.get("pinned"))), by=by)
    elif op == "fact_correct":
        fact_id, text, pinned = check_fact_id(params.get("fact_id")), _text(rt, params.get("text"), False), _pinned(
            params.get("pinned"))
        if text is None and pinned is None:
            raise ValueError("text: give a new text, or pinned, or both")
        entry = fact_changes.correct(store, user_id, fact_id, text=text, pinned=pinned, by=by)
    elif op == "fact_delete":
        entry = fact_changes.delete(store, user_id, check_fact_id(params.get("fact_id")), by=by)
    else:
        raise ValueError(f"op: {op!r} is not a fact operation")
    return entry.model_dump(mode="json")


FACT_OPS = ("facts_list", "fact_add", "fact_correct", "fact_delete")

"""Operators' commands over RPC (export, forget, inspect, dead letters), answered by a worker that owns
the vector store: how a process that cannot open the embedded store (the CLI beside a running worker,
a light chat backend) exports or forgets a user."""

from __future__ import annotations

import json
from typing import Any

from producers.publish import Publisher
from producers.retrieve import client_for
from producers.wire.contract import ADMIN_TASK

ADMIN_TIMEOUT = 120.0  # forget waits out in-flight work (up to two lock TTLs) before it answers


def call_admin(
    op: str, user_id: str | None, *, timeout: float = ADMIN_TIMEOUT, publisher: Publisher | None = None,
    params: dict[str, Any] | None = None,
) -> Any:
    """Runs `op` (export, forget, inspect, dead_list, dead_replay, the fact edits with `params`) on a
    worker; its JSON answer."""
    kwargs = {"params": params} if params else {}
    return json.loads(client_for(publisher).call(ADMIN_TASK, [op, user_id], kwargs, timeout=timeout))


def export_user(user_id: str, *, timeout: float = ADMIN_TIMEOUT, publisher: Publisher | None = None,
                ) -> list[dict[str, Any]]:
    """Every stored record of the user (turns of every tier, segments, profile, facts)."""
    return call_admin("export", user_id, timeout=timeout, publisher=publisher)  # type: ignore[no-any-return]


def forget_user(user_id: str, *, timeout: float = ADMIN_TIMEOUT, publisher: Publisher | None = None,
                ) -> dict[str, int]:
    """Deletes every tier of the user; what was removed, by tier. Safe to run twice."""
    return call_admin("forget", user_id, timeout=timeout, publisher=publisher)  # type: ignore[no-any-return]

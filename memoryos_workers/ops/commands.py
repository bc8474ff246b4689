"""Operators' reads and writes on one user (export, forget, inspect, dead letters, a forced persona
extraction), in one table: `LocalMemory` runs them where the store is, and a worker runs them for a
`RemoteMemory` over RPC (the operator_command task)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from memoryos_workers.runtime import Runtime
from schemas.turns import check_id


def _export(rt: Runtime, user_id: str | None) -> list[dict[str, Any]]:
    from memoryos_workers.ops.user_data import collect_user_records

    return list(collect_user_records(rt, _required(user_id)))


def _forget(rt: Runtime, user_id: str | None) -> dict[str, int]:
    from memoryos_workers.ops.user_data import erase_user

    return erase_user(rt, _required(user_id))


def _inspect(rt: Runtime, user_id: str | None) -> dict[str, Any]:
    from memoryos_workers.ops.user_data import inspect_user

    return inspect_user(rt, _required(user_id))


def _dead_list(rt: Runtime, user_id: str | None) -> list[dict[str, Any]]:
    from memoryos_workers.ops.dead_letters import list_dead

    return list_dead(rt, user_id)


def _dead_replay(rt: Runtime, user_id: str | None) -> dict[str, dict[str, int]]:
    from memoryos_workers.ops.dead_letters import replay

    users = [user_id] if user_id else rt.redis.zrange(rt.keys.dead_index, 0, -1)
    return {u: replay(rt, u) for u in users}


def _analyse(rt: Runtime, user_id: str | None) -> dict[str, int]:
    """Persona extraction now, over every segment's unread pages however hot (force_mid_term_analysis)."""
    return rt.persona_worker.extract(_required(user_id), force=True)


OPS: dict[str, Callable[[Runtime, str | None], Any]] = {
    "export": _export,
    "forget": _forget,
    "inspect": _inspect,
    "dead_list": _dead_list,
    "dead_replay": _dead_replay,
    "analyse": _analyse,
}


def run(rt: Runtime, op: str, user_id: str | None, params: dict[str, Any] | None = None) -> Any:
    """`params`: the arguments of a fact operation (memoryos_workers/ops/fact_ops.py)."""
    from memoryos_workers.ops.fact_ops import FACT_OPS, run_fact_op

    if op not in OPS and op not in FACT_OPS:
        raise ValueError(f"op: must be one of {', '.join([*OPS, *FACT_OPS])}, not {op!r}")
    check_id("user_id", user_id, required=False)
    if op in FACT_OPS:
        return run_fact_op(rt, op, _required(user_id), dict(params or {}))
    return OPS[op](rt, user_id)


def _required(user_id: str | None) -> str:
    if user_id is None:
        raise ValueError("user_id: required for this operation")
    return user_id

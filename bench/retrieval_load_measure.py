"""Retrieval under load, the measurements (bench/retrieval_load.py): the worker's ingest rate, RPC retrievals
(through the retrieval lane and, for comparison, the older Celery task path), and one row of the table: a load
at a share of that rate with the retrievals timed under it, the backlog it leaves and how fast that drains."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from .common import percentile, summary
from .retrieval_load_traffic import _fresh_users, _Load


def _ingest_rate(rt: Any, users: int, turns: int, timeout: float, rng: random.Random) -> dict[str, Any]:
    """Pages per second from the publish of a burst until every user is idle, persona work included (as in
    bench/ingest.py). Beside it, the rate the backlog drains while the worker is saturated (read after 3 s
    and again once a quarter is left): higher, since under a backlog a drain takes several batches of a
    user and one persona extraction covers them, where a trickle of turns gets one per batch."""
    from .retrieval import _turn

    fresh = _fresh_users(rt, "rate", users, rng)
    per_user = turns // users
    batch = [{"user_id": u, **dict(zip(("user_input", "agent_response"), _turn(rng), strict=True))}
             for _ in range(per_user) for u in fresh]
    t0 = time.perf_counter()
    rt.publisher.publish_many(batch)
    time.sleep(3.0)
    first, t1 = rt.pending.backlog(), time.perf_counter()
    while True:
        time.sleep(1.0)
        last, t2 = rt.pending.backlog(), time.perf_counter()
        if last.pages <= first.pages / 4 or t2 - t1 >= 60:
            break
    for user in tqdm(fresh, desc="ingest rate: users idle", unit="user", leave=False):
        rt.pending.wait_idle(user, timeout=timeout)
    seconds = time.perf_counter() - t0
    pages = per_user * users
    drained = first.pages - last.pages
    if drained <= 0:
        raise RuntimeError(f"the backlog did not shrink while measuring the ingest rate ({first} -> {last})")
    return {"pages": pages, "seconds": seconds, "pages_per_s": pages / seconds,
            "saturated_drain_pages_per_s": drained / (t2 - t1), "window_s": t2 - t1, "window_pages": drained,
            "users": fresh,
            "published": {u: rt.settings.short_term_capacity + per_user for u in fresh}}


def _ask(client: Any, user: str, query: str, **options: Any) -> Any:
    """One RPC retrieval: RetrievalClient takes a RetrievalRequest (its options checked where it is built)."""
    from schemas.query import RetrievalRequest

    return client.retrieve(RetrievalRequest.of(user, query, **options))


def _retrievals(client: Any, users: Sequence[str], n: int, gap: float, deadline_ms: int,
                rng: random.Random) -> dict[str, Any]:
    from .retrieval import _query

    latencies, degraded, reasons, errors, worker_ms = [], 0, {}, [], []
    for _ in tqdm(range(n), desc="retrievals", unit="call", leave=False):
        user, query = rng.choice(users), _query(rng)
        t0 = time.perf_counter()
        try:
            context = _ask(client, user, query, deadline_ms=deadline_ms)
        except Exception as exc:  # noqa: BLE001 - the floor: none may reach the caller
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
            context = None
        latencies.append(time.perf_counter() - t0)
        if context is not None and context.degraded:
            degraded += 1
            kind = context.degraded_reason.split(":")[0][:60]
            reasons[kind] = reasons.get(kind, 0) + 1
        elif context is not None:
            worker_ms.append(context.timings_ms.get("total", 0.0))
        time.sleep(gap)
    return {"latency": summary(latencies), "calls": n, "degraded": degraded, "degraded_share": degraded / n,
            "reasons": reasons, "exceptions": len(errors), "first_exception": errors[0] if errors else "",
            "worker_p50_ms": percentile(worker_ms, 50) if worker_ms else None}


def _celery_path(client: Any, users: Sequence[str], n: int, timeout: float, rng: random.Random) -> dict[str, Any]:
    """The path before the retrieval lane, for comparison: the retrieve task on the Celery retrieval queue,
    served by the worker's pool that ingestion shares (the task is still registered for older producers)."""
    from producers.wire.contract import RETRIEVE_TASK

    from .retrieval import _query

    latencies, timeouts = [], 0
    for _ in tqdm(range(n), desc="celery-path retrievals", unit="call", leave=False):
        user, query = rng.choice(users), _query(rng)
        t0 = time.perf_counter()
        frame = client._celery_call(RETRIEVE_TASK, [user, query], {"top_k": 10}, timeout, None)
        latencies.append(time.perf_counter() - t0)
        timeouts += frame is None
    return {"latency": summary(latencies), "calls": n, "timeouts": timeouts, "timeout_s": timeout}


def _phase(rt: Any, client: Any, targets: Sequence[str], load: float, rate: float, o: dict[str, Any],
           rng: random.Random) -> dict[str, Any]:
    from dataclasses import asdict

    publisher_load = None
    if load > 0:
        users = _fresh_users(rt, f"load{int(load * 100)}", o["load_users"], rng)
        publisher_load = _Load(rt.publisher, users, load * rate, rng, rt.settings.promotion_batch_size)
        publisher_load.start()
        time.sleep(o["warmup"])
    started = time.perf_counter()
    result = _retrievals(client, targets, o["retrievals"], o["gap"], o["deadline_ms"], rng)
    result.update(load=load, turns_per_s=load * rate, seconds=time.perf_counter() - started)
    if o["celery_calls"]:
        result["celery_path"] = _celery_path(client, targets, o["celery_calls"], o["celery_timeout"], rng)
        result["seconds"] = time.perf_counter() - started
    if publisher_load is not None:
        publisher_load.stop.set()
        publisher_load.join()
        backlog = rt.pending.backlog()
        result["backlog"] = asdict(backlog)
        result["batches_formed"] = sum(n // rt.settings.promotion_batch_size
                                       for n in publisher_load.published.values())
        result["publish"] = summary(publisher_load.latencies)
        result["published_turns"] = sum(publisher_load.published.values())
        result["publish_errors"] = len(publisher_load.errors)
        result["achieved_turns_per_s"] = result["published_turns"] / (o["warmup"] + result["seconds"])
        drain_started = time.perf_counter()
        for user in tqdm(publisher_load.users, desc="phase users idle", unit="user", leave=False):
            rt.pending.wait_idle(user, timeout=o["timeout"], flush=True)  # partial buffers too, for the check
        # The backlog left at the end of the row, drained with the load stopped (partial buffers flushed too).
        result["drain_s"] = time.perf_counter() - drain_started
        result["drain_pages_per_s"] = backlog.pages / result["drain_s"] if result["drain_s"] > 0 else float("nan")
        result["published"] = {u: rt.settings.short_term_capacity + n for u, n in publisher_load.published.items()}
    result["lane"] = client.lane()
    return result

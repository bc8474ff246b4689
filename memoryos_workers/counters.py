"""Deployment-wide counters in one Redis hash (LLM calls and tokens, fallbacks, dead letters, ...), and
the gauges read beside them: what `memoryos stats`, the HTTP API's /v1/stats and /metrics and the
benchmarks all read, from here."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import redis

from producers.broker import queue_depths
from producers.pending import read_backlog, sweep_entries
from producers.publish import Publisher
from producers.wire.contract import ALL_QUEUES
from producers.wire.keys import Keys, Sharded
from producers.wire.rpc import ALIVE_S
from producers.wire.scripts import Scripts

# What an LLM call was for (counters `llm_calls_<purpose>`, `llm_prompt_tokens_<purpose>`, ...): the first call
# of a unit of work (segmentation, persona), any further call for the same work (retry: the client's own
# attempts, asking again for what an answer missed, smaller calls after a context overflow or a cut answer),
# and calls whose work ended in the fallback anyway (fallback).
LLM_PURPOSES = ("segmentation", "persona", "retry", "fallback")
MAX_USERS_SUMMED = 10_000  # the backlog sums over at most this many users of the sweep index, most overdue first


class Spent(Protocol):
    calls: int
    prompt_tokens: int
    completion_tokens: int


def count(client: redis.Redis, stats: Sharded, **counters: int) -> None:
    """Adds to the deployment's counters (one shard of them on a cluster: see Keys.stats)."""
    key = stats.any()
    pipe = client.pipeline(transaction=False)
    for name, value in counters.items():
        if value:
            pipe.hincrby(key, name, value)
    pipe.execute()


def read_counters(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """The deployment's counters, summed over the shards of Keys.stats (one pipelined round trip)."""
    pipe = client.pipeline(transaction=False)
    for shard in keys.stats.names:
        pipe.hgetall(shard)
    totals: dict[str, int] = {}
    for counters in pipe.execute():
        for name, value in counters.items():
            totals[name] = totals.get(name, 0) + int(value)
    return totals


LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 1000)


def latency_bucket(ms: float) -> str:
    """The histogram counter a retrieval of `ms` falls in (Prometheus-style upper bounds, not cumulative)."""
    for bound in LATENCY_BUCKETS_MS:
        if ms <= bound:
            return f"retrieval_ms_le_{bound}"
    return "retrieval_ms_le_inf"


def llm_usage(purpose: str, spent: Spent) -> dict[str, int]:
    """LLM calls and tokens as counters: the deployment's totals and the same split by purpose
    (`llm_calls_segmentation`, ...), which /metrics exposes as a `purpose` label."""
    if purpose not in LLM_PURPOSES:
        raise ValueError(f"unknown LLM call purpose {purpose!r}")
    values = {"calls": spent.calls, "prompt_tokens": spent.prompt_tokens, "completion_tokens": spent.completion_tokens}
    out = {f"llm_{name}": value for name, value in values.items()}
    out.update({f"llm_{name}_{purpose}": value for name, value in values.items()})
    return out


def llm_cost_lines(stats: dict[str, Any]) -> list[str]:
    """LLM calls and tokens per 100 promoted turns, in all and by purpose (the cost bound is stated on these),
    for `memoryos stats`; nothing before a turn is promoted."""
    turns = int(stats.get("pages_promoted", 0) or 0)
    if not turns:
        return []
    lines = [f"per 100 promoted turns ({turns} promoted):"]
    for purpose in ("all", *LLM_PURPOSES):
        suffix = "" if purpose == "all" else f"_{purpose}"
        calls = int(stats.get(f"llm_calls{suffix}", 0) or 0)
        tokens = int(stats.get(f"llm_prompt_tokens{suffix}", 0) or 0) + int(
            stats.get(f"llm_completion_tokens{suffix}", 0) or 0)
        lines.append(f"  {purpose:14} {100 * calls / turns:8.1f} calls {100 * tokens / turns:12.0f} tokens")
    lines.append(f"  fallbacks      {stats.get('segment_fallbacks', 0)} batch(es), "
                 f"{stats.get('segment_fallback_pages', 0)} page(s)")
    return lines


def queue_key(keys: Keys, queue: str) -> str:
    """Celery's Redis list of a queue's waiting messages (kombu's global_keyprefix + the queue name)."""
    return keys.celery + queue


def read_stats(client: redis.Redis, keys: Keys, *, now: float | None = None,
               queue_depths: Callable[[], dict[str, int]] | None = None) -> dict[str, Any]:
    """The counters plus the gauges: users in the sweep index and how late the most overdue of them is,
    users with dead letters, messages waiting per queue (`queue_<name>`), the ingestion backlog across the
    users of the sweep index (every user with pending work is in it): `pending_batches`, `backlog_pages`,
    `backlog_users`, `backlog_oldest_s`, `backlog_buffered`; and the retrieval lane: `retrieval_servers`
    heard from lately, `retrieval_requests_waiting`. `queue_depths` reads the queues of a broker that is not
    this Redis (producers.broker)."""
    now = time.time() if now is None else now
    stats: dict[str, Any] = read_counters(client, keys)
    earliest = sweep_entries(client, keys, 1)
    pipe = client.pipeline(transaction=False)
    for shard in keys.sweep.names:
        pipe.zcard(shard)
    for shard in keys.users.names:
        pipe.zcard(shard)
    pipe.zcard(keys.dead_index)
    pipe.zcount(keys.rpc_servers, now - ALIVE_S, "+inf")
    pipe.llen(keys.rpc_requests)
    if queue_depths is None:
        for queue in ALL_QUEUES:
            pipe.llen(queue_key(keys, queue))
    replies = pipe.execute()
    n_sweep, n_users = len(keys.sweep.names), len(keys.users.names)
    dead_users, servers, requests, *queues = replies[n_sweep + n_users:]
    stats["users_in_sweep_index"] = sum(replies[:n_sweep])
    stats["sweep_overdue_s"] = round(max(0.0, now - earliest[0][1]), 1) if earliest else 0
    stats["users_with_dead_letters"] = dead_users
    stats["users_indexed"] = sum(replies[n_sweep:n_sweep + n_users])
    depths = queue_depths() if queue_depths is not None else dict(zip(ALL_QUEUES, queues, strict=True))
    stats.update({f"queue_{queue}": length for queue, length in depths.items()})
    stats["retrieval_servers"], stats["retrieval_requests_waiting"] = servers, requests
    backlog = read_backlog(client, keys, Scripts.register(client), now=now, limit=MAX_USERS_SUMMED)
    stats["pending_batches"] = backlog.batches
    stats.update(backlog_users=backlog.users, backlog_pages=backlog.pages, backlog_oldest_s=backlog.oldest_s,
                 backlog_buffered=backlog.buffered)
    return stats


def deployment_stats(publisher: Publisher) -> dict[str, Any]:
    """`read_stats` for a deployment: its memory Redis, and its broker's queues wherever the broker is."""
    return read_stats(publisher.redis, publisher.keys, queue_depths=queue_depths(publisher.settings, ALL_QUEUES))

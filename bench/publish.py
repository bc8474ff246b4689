"""publish_turn latency and throughput (one at a time, bulk, 4 threads), beside a Redis PING round trip
and beside sending one Celery task per turn, both measured in the same run.

PING is timed back to back and alternately with `publish_turn`, in blocks spread over the same seconds as
the publishes (see _single_and_ping): on a shared machine the load moves within seconds, and the ratios
(p50 to PING p50, p99 to PING p99) are the figures to compare. The load average is recorded before and after.

No worker runs: this measures the chat backend's cost only. Batches that fill up send a task to a
queue nobody consumes, under a private key prefix deleted at the end. The Celery baseline sends the same
turn dict with the Celery app's `send_task` (the producers' configuration: JSON, the private
`global_keyprefix`) to a queue nobody consumes, so its messages are deleted with the rest.
"""

from __future__ import annotations

import argparse
import os
import textwrap
import threading
import time
import uuid
from typing import Any

from tqdm import tqdm

from producers.publish import Publisher
from producers.sender import TaskSender
from producers.wire.contract import celery_config

from .common import (
    bench_settings,
    cleanup,
    finish,
    fmt,
    image_md,
    md_table,
    pyplot,
    ratio,
    reproduce_md,
    save_figure,
    summary,
)

CELERY_TASK = "mosbench.turn"  # registered nowhere: nobody consumes the queue
CELERY_QUEUE = "mosbench.unconsumed"

PING = "Redis PING round trip, back to back"
PING_BESIDE = "Redis PING round trip, alternating with publish_turn"
SINGLE = "publish_turn, one at a time"
THREADS = "publish_turn, {threads} threads"
BULK = "publish_turns, {chunk} per call"
CELERY = "one Celery task per turn (send_task)"


def _message(i: int, user: str) -> dict[str, Any]:
    return {"user_id": user, "user_input": f"message {i} " * 8, "agent_response": f"reply {i} " * 8}


def _timed(call: Any) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def _single_and_ping(publisher: Publisher, n: int, users: int, block: int = 100,
                     ) -> tuple[list[float], list[float], list[float]]:
    """n publish_turn calls and 2n PINGs in blocks spread over the same time: `block` PINGs back to back,
    then `block` publishes each right after a PING of its own. On a shared machine the load moves within
    seconds; this way a stall hits the baselines as often as the publishes.
    Returns (publishes, PINGs back to back, PINGs alternating with the publishes)."""
    turns, back_to_back, beside = [], [], []
    ping = publisher.redis.ping
    bar = tqdm(total=n, desc="publish_turn beside PING", unit="turn", leave=False)
    for start in range(0, n, block):
        size = min(block, n - start)
        back_to_back += [_timed(ping) for _ in range(size)]
        for i in range(start, start + size):
            turn = _message(i, f"bench-{i % users}")
            beside.append(_timed(ping))
            turns.append(_timed(lambda turn=turn: publisher.publish(turn)))  # type: ignore[misc]
        bar.update(size)
    bar.close()
    return turns, back_to_back, beside


def _single(publisher: Publisher, n: int, users: int, tag: str = "bench", progress: bool = True) -> list[float]:
    out = []
    for i in tqdm(range(n), desc="publish_turn", unit="turn", leave=False, disable=not progress):
        turn = _message(i, f"{tag}-{i % users}")
        t0 = time.perf_counter()
        publisher.publish(turn)
        out.append(time.perf_counter() - t0)
    return out


def _threads(publisher: Publisher, n: int, users: int, threads: int) -> tuple[list[float], float]:
    """`threads` threads share one Publisher (as a chat backend process does), each with its own users,
    n turns in all. Returns every call's latency and the wall time from the first to the last call."""
    per_thread = n // threads
    results: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)
    bar = tqdm(total=per_thread * threads, desc=f"publish_turn x{threads} threads", unit="turn", leave=False)

    def work(index: int) -> None:
        barrier.wait()
        out = results[index]
        for i in range(per_thread):
            turn = _message(i, f"thread{index}-{i % max(1, users // threads)}")
            t0 = time.perf_counter()
            publisher.publish(turn)
            out.append(time.perf_counter() - t0)
            if i % 100 == 99:
                bar.update(100)

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    bar.close()
    return [x for r in results for x in r], wall


def _bulk(publisher: Publisher, n: int, users: int, chunk: int) -> tuple[list[float], float]:
    turns = [dict(_message(i, f"bulk-{i % users}"), turn_id=uuid.uuid4().hex) for i in range(n)]
    calls = []
    t0 = time.perf_counter()
    for start in tqdm(range(0, n, chunk), desc="publish_turns", unit="chunk", leave=False):
        c0 = time.perf_counter()
        publisher.publish_many(turns[start : start + chunk])
        calls.append(time.perf_counter() - c0)
    return calls, time.perf_counter() - t0


def _celery(sender: TaskSender, n: int, users: int) -> list[float]:
    """The same turn dict as a task message, one per turn, to a queue under the private prefix."""
    app = sender.app
    out = []
    for i in tqdm(range(n), desc="Celery send_task", unit="task", leave=False):
        turn = dict(_message(i, f"celery-{i % users}"), turn_id=uuid.uuid4().hex)
        t0 = time.perf_counter()
        app.send_task(CELERY_TASK, args=[turn], queue=CELERY_QUEUE, ignore_result=True)
        out.append(time.perf_counter() - t0)
    return out


def _row(name: str, calls: list[float], rate: float, unit: str = "turn") -> dict[str, Any]:
    return {"name": name, **summary(calls), "rate": rate, "calls": len(calls), "call_unit": unit}


def run(n: int = 5000, users: int = 50, chunk: int = 500, threads: int = 4, bulk_n: int = 20_000) -> dict[str, Any]:
    settings = bench_settings()
    publisher = Publisher(settings)
    sender = TaskSender(settings)
    assert sender.app.conf.broker_transport_options == celery_config(settings)["broker_transport_options"]
    try:
        # Scripts loaded, connections open, and each warm-up user's first batch sent (Celery loaded).
        warm = (settings.short_term_capacity + settings.promotion_batch_size) * users
        _single(publisher, warm, users, tag="warm", progress=False)
        _celery(sender, 50, users)  # the broker connection opened, the queue declared
        load_before = os.getloadavg()
        single, ping, ping_beside = _single_and_ping(publisher, n, users)
        threaded, wall = _threads(publisher, n, users, threads)
        bulk_calls, bulk_wall = _bulk(publisher, bulk_n, users, chunk)
        celery = _celery(sender, n, users)
        load_after = os.getloadavg()
    finally:
        removed = cleanup(publisher.redis, settings.key_prefix)
    rows = [
        _row(PING, ping, len(ping) / sum(ping), unit="call"),
        _row(PING_BESIDE, ping_beside, len(ping_beside) / sum(ping_beside), unit="call"),
        _row(SINGLE, single, len(single) / sum(single)),
        _row(THREADS.format(threads=threads), threaded, len(threaded) / wall),
        _row(BULK.format(chunk=chunk), bulk_calls, bulk_n / bulk_wall, unit=f"call of {chunk} turns"),
        _row(CELERY, celery, len(celery) / sum(celery)),
    ]
    result: dict[str, Any] = {
        "n": n, "bulk_n": bulk_n, "users": users, "chunk": chunk, "threads": threads, "rows": rows,
        "keys_deleted": removed,
        "cpus": os.cpu_count(),
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in load_after]},
        "reproduce": f"python -m bench publish --n {n} --bulk-n {bulk_n} --users {users} --chunk {chunk} "
                     f"--threads {threads}",
    }
    return finish("publish", result, _print, _plot)


def _find(result: dict[str, Any], prefix: str) -> dict[str, Any]:
    return next(r for r in result["rows"] if r["name"].startswith(prefix))


def _table(result: dict[str, Any]) -> list[tuple[str, ...]]:
    ping, celery = _find(result, PING), _find(result, CELERY)
    out = []
    for r in result["rows"]:
        per_turn = r["call_unit"] == "turn"
        per_call = r["call_unit"] != f"call of {result['chunk']} turns"
        out.append((
            r["name"] + ("" if per_call else " *"),
            fmt(r["p50_ms"], 3), fmt(r["p99_ms"], 3), fmt(r["rate"]),
            ratio(r["p50_ms"], ping["p50_ms"]) if per_call else "—",
            ratio(r["p99_ms"], ping["p99_ms"]) if per_call else "—",
            ratio(r["p50_ms"], celery["p50_ms"]) if per_turn and r["name"] != THREADS.format(threads=result["threads"])
            else "—",
            ratio(r["rate"], celery["rate"]) if r["call_unit"] != "call" else "—",
        ))
    return out


HEADERS = ("", "p50 ms", "p99 ms", "turns/s", "p50 / PING p50", "p99 / PING p99", "p50 / Celery task",
           "turns/s / Celery task")

# Issue 24's floors: a publish costs about one round trip; a bulk call of 500 at least 15,000 turns/s here.
MAX_P99_TO_PING = 5.0
MIN_BULK_RATE = 15_000


def goals(result: dict[str, Any]) -> str:
    single, ping, beside = _find(result, SINGLE), _find(result, PING), _find(result, PING_BESIDE)
    bulk = _find(result, "publish_turns")
    p99 = single["p99_ms"] / ping["p99_ms"]
    at_median = result["chunk"] / bulk["p50_ms"] * 1000
    return (f"publish_turn p99 / PING p99 (back to back) = {p99:.2f}x (goal at most {MAX_P99_TO_PING:g}x: "
            f"{'met' if p99 <= MAX_P99_TO_PING else 'NOT met'}; against the alternating PING "
            f"{single['p99_ms'] / beside['p99_ms']:.2f}x); publish_turns of {result['chunk']}: "
            f"{bulk['rate']:,.0f} turns/s over the run, {at_median:,.0f} at the median call (goal at least "
            f"{MIN_BULK_RATE:,}: {'met' if bulk['rate'] >= MIN_BULK_RATE else 'NOT met'})")


def load_text(result: dict[str, Any]) -> str:
    load = result.get("load_average")
    if not load:
        return "load average not recorded"
    return (f"load average (1/5/15 min) {'/'.join(f'{x:.1f}' for x in load['before'])} before, "
            f"{'/'.join(f'{x:.1f}' for x in load['after'])} after, on {result.get('cpus', '?')} CPUs")


def _print(result: dict[str, Any]) -> None:
    print(f"\npublish benchmark: {result['n']} turns per row over {result['users']} users, one process, no worker")
    print(load_text(result))
    widths = (38, 9, 9, 10, 15, 15, 18, 22)
    print(f"(* latency per call of {result['chunk']} turns)")
    print(" ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(HEADERS, widths, strict=True))))
    for row in _table(result):
        print(" ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    print(goals(result))


def _plot(result: dict[str, Any]) -> Any:
    plt = pyplot()
    rows = [r for r in result["rows"] if not r["name"].startswith("publish_turns")]
    names = [textwrap.fill(r["name"], 18) for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    x = range(len(rows))
    ax1.bar([i - 0.2 for i in x], [r["p50_ms"] for r in rows], 0.4, label="p50")
    ax1.bar([i + 0.2 for i in x], [r["p99_ms"] for r in rows], 0.4, label="p99")
    ax1.set_xticks(list(x), names, fontsize=7)
    ax1.set_ylabel("ms per call")
    ax1.set_title("latency per call")
    ax1.legend()
    ax1.grid(axis="y", alpha=0.3)
    rates = [r for r in result["rows"] if r["call_unit"] != "call"]
    ax2.bar(range(len(rates)), [r["rate"] for r in rates], 0.6, color="tab:green")
    ax2.set_xticks(range(len(rates)), [textwrap.fill(r["name"], 18) for r in rates], fontsize=7)
    ax2.set_ylabel("turns/s")
    ax2.set_title("throughput, one process")
    ax2.grid(axis="y", alpha=0.3)
    return save_figure(fig, "publish.png")


def markdown(result: dict[str, Any]) -> str:
    bulk_n = result.get("bulk_n", result["n"])
    return "\n\n".join([
        "## 1. Publishing turns",
        "What the chat backend pays per turn: `publish_turn` (one Lua script and the two index updates, pipelined "
        f"in one round trip) one call at a time, from {result['threads']} threads sharing one publisher (each "
        f"thread its own users), and `publish_turns` in bulk (one script per user in the call); {result['n']:,} "
        f"turns per row ({bulk_n:,} in the bulk row) over {result['users']} users, Redis on loopback, no worker "
        "running. Baselines from the same run: a Redis `PING` round trip, the floor for any call to Redis, timed "
        "back to back (as before issue 24) and alternately with the one-at-a-time row (a PING, then a publish), "
        "in blocks of 100 spread over the same seconds as the publishes; and sending the same turn dict as one "
        "Celery task per turn (`send_task`, the producers' Celery configuration, to a queue nobody consumes), the "
        "usual way to hand work to Celery workers. The single row's users are new, so 1% of its publishes cut a "
        "user's first batch and hand a promote kick to the background thread.",
        f"Measured with the {load_text(result)}.",
        md_table(HEADERS, _table(result)),
        f"Goals of issue 24: {goals(result)}.",
        "\\* latency per call of "
        f"{result['chunk']} turns. turns/s of a single-threaded row is calls / time spent in the calls; of the "
        "threaded and bulk rows, turns / wall time. The threaded row's latency is per call while the other "
        "threads publish too, so it is compared with PING only.",
        image_md("publish latency and throughput", "publish.png"),
        reproduce_md(result["reproduce"]),
    ])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=5000, help="turns (or calls) per row")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--chunk", type=int, default=500, help="turns per publish_turns call")
    parser.add_argument("--threads", type=int, default=4, help="threads for the concurrent row")
    parser.add_argument("--bulk-n", type=int, default=20_000,
                        help="turns of the bulk row (enough calls that one stalled call does not make the figure)")

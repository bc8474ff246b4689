"""publish_turn latency and throughput, beside a Redis PING round trip measured in the same run.

No worker runs: this measures the chat backend's cost only. Batches that fill up send a task to a
queue nobody consumes, under a private key prefix deleted at the end.
"""

from __future__ import annotations

import argparse
import time
import uuid

from tqdm import tqdm

from producers.publish import Publisher

from .common import bench_settings, cleanup, reproduce, summary


def _ping(publisher: Publisher, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        publisher.redis.ping()
        out.append(time.perf_counter() - t0)
    return out


def _single(publisher: Publisher, n: int, users: int) -> list[float]:
    out = []
    for i in tqdm(range(n), desc="publish_turn", unit="turn", leave=False):
        t0 = time.perf_counter()
        publisher.publish({"user_id": f"bench-{i % users}", "user_input": f"message {i} " * 8,
                           "agent_response": f"reply {i} " * 8})
        out.append(time.perf_counter() - t0)
    return out


def _bulk(publisher: Publisher, n: int, users: int, chunk: int) -> float:
    turns = [{"user_id": f"bulk-{i % users}", "user_input": f"message {i} " * 8, "agent_response": f"reply {i} " * 8,
              "turn_id": uuid.uuid4().hex} for i in range(n)]
    t0 = time.perf_counter()
    for start in tqdm(range(0, n, chunk), desc="publish_turns", unit="chunk", leave=False):
        publisher.publish_many(turns[start : start + chunk])
    return time.perf_counter() - t0


def run(n: int = 5000, users: int = 50, chunk: int = 500) -> dict[str, float]:
    settings = bench_settings()
    publisher = Publisher(settings)
    try:
        _single(publisher, 200, users)  # warm up: scripts loaded, connections open
        ping = summary(_ping(publisher, n))
        single_samples = _single(publisher, n, users)
        single = summary(single_samples)
        single_rate = n / sum(single_samples)
        bulk_rate = n / _bulk(publisher, n, users, chunk)
    finally:
        cleanup(publisher.redis, settings.key_prefix)
    rows = [
        ("Redis PING round trip (baseline)", ping["p50_ms"], ping["p99_ms"], float("nan"), 1.0),
        ("publish_turn, one at a time", single["p50_ms"], single["p99_ms"], single_rate,
         single["p50_ms"] / ping["p50_ms"]),
        (f"publish_turns, bulk of {chunk}", float("nan"), float("nan"), bulk_rate, float("nan")),
    ]
    print(f"\npublish benchmark: {n} turns over {users} users, one process")
    print(f"{'':40} {'p50 ms':>9} {'p99 ms':>9} {'turns/s':>10} {'p50 / PING':>11}")
    for name, p50, p99, rate, ratio in rows:
        print(f"{name:40} {p50:9.3f} {p99:9.3f} {rate:10.0f} {ratio:11.2f}")
    print(f"floors: p50 within 10x of PING -> {single['p50_ms'] / ping['p50_ms']:.2f}x; bulk >= 3000 turns/s -> "
          f"{bulk_rate:.0f}")
    print(reproduce(f"python -m bench publish --n {n} --users {users} --chunk {chunk}"))
    return {"ping_p50_ms": ping["p50_ms"], "single_p50_ms": single["p50_ms"], "single_p99_ms": single["p99_ms"],
            "single_rate": single_rate, "bulk_rate": bulk_rate}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--chunk", type=int, default=500)

"""Scaling out: memory on one Redis against a 3-master Redis Cluster, Celery on Redis against RabbitMQ, and
the cost of MEMORYOS_PUBLISH_MIN_REPLICAS=1; each as a ratio to a baseline measured in the same run.

Memory: one plain redis-server with a replica ("one node", as deployed today) and a private 6-node cluster
(3 masters, 3 replicas), both on this machine, without persistence. Publishing (no worker): `publish_turn`
one at a time, from 4 threads, and `publish_turns` in bulk, with min replicas 0 and 1. Ingestion: one worker
process (threads pool) promotes a few users' turns with the fake LLM at 0 ms, from the first publish until
every user is idle. The broker of those runs is the machine's Redis under a private prefix, the same for
both, so only the memory store differs.

Broker: memory on the one node, a worker process (4 threads), Celery's broker the memory Redis itself (the
default) or RabbitMQ (a private vhost; skipped, saying why, when none answers). A task here is the promote
kick of a user with nothing pending; it is seen done when the worker cleared the user's kick flag. Latency:
one task at a time, from send to done; throughput: many at once, tasks per second until all are done.

One machine of 2 cores runs every node, the worker and the load: the cluster cannot add cores here, so its
rows show what routing and sharding cost, not the throughput more machines bring.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .common import (
    bench_settings,
    cleanup,
    finish,
    fmt,
    md_table,
    ratio,
    redis_url,
    reproduce_md,
    summary,
    worker,
)
from .publish import _bulk, _single, _threads

INGEST_QUEUES = ("memoryos.ingest", "memoryos.persona")


def _load() -> float:
    return round(os.getloadavg()[0], 2)


# --- publishing --------------------------------------------------------------------------------------------


def _publish_row(name: str, url: str, min_replicas: int, n: int, users: int, threads: int, chunk: int,
                 ) -> dict[str, Any]:
    from producers.publish import Publisher

    settings = bench_settings(redis_url=url, broker_url=redis_url(), publish_min_replicas=min_replicas)
    publisher = Publisher(settings)
    try:
        _single(publisher, (settings.short_term_capacity + settings.promotion_batch_size) * 10, 10, tag="warm",
                progress=False)
        single = _single(publisher, n, users)
        threaded, wall = _threads(publisher, n, users, threads)
        _, bulk_wall = _bulk(publisher, n, users, chunk)
    finally:
        cleanup(_shared(), settings.key_prefix)  # the broker's keys (memory is a private server, dropped at the end)
    return {"name": name, "min_replicas": min_replicas, **summary(single), "single_rate": len(single) / sum(single),
            "threads_rate": len(threaded) / wall, "bulk_rate": n / bulk_wall}


def _shared() -> Any:
    from producers.connection import redis_client

    return redis_client(redis_url())


# --- ingestion ---------------------------------------------------------------------------------------------


def _ingest_row(name: str, url: str, folder: Path, llm_url: str, users: int, turns: int) -> dict[str, Any]:
    from producers.pending import PendingWork
    from producers.publish import Publisher

    settings = bench_settings(redis_url=url, broker_url=redis_url(), data_dir=folder / name.replace(" ", "-"),
                              openai_base_url=llm_url, openai_api_key="bench")
    publisher = Publisher(settings)
    ids = [f"scale-{uuid.uuid4().hex[:6]}-{i}" for i in range(users)]
    batch = [{"user_id": ids[i % users], "user_input": f"turn {i}: I keep bees and tomatoes in Porto",
              "agent_response": f"noted {i}"} for i in range(users * turns)]
    try:
        with worker(settings, folder / f"{name}.log", INGEST_QUEUES, 4, "scale",
                    MEMORYOS_BROKER_URL=redis_url(), MEMORYOS_OPENAI_BASE_URL=llm_url, MEMORYOS_OPENAI_API_KEY="bench"):
            _wait_for_worker(publisher, folder / f"{name}.log")
            pending = PendingWork(publisher)
            warm = f"scale-warm-{uuid.uuid4().hex[:6]}"
            publisher.publish_many([dict(t, user_id=warm) for t in batch[:25]])
            pending.wait_idle(warm, timeout=300, flush=True)
            t0 = time.perf_counter()
            for start in range(0, len(batch), 50):
                publisher.publish_many(batch[start:start + 50])
            for user in ids:
                pending.wait_idle(user, timeout=600, flush=True)
            seconds = time.perf_counter() - t0
    finally:
        cleanup(_shared(), settings.key_prefix)
    pages = users * (turns - settings.short_term_capacity)
    return {"name": name, "turns": len(batch), "pages": pages, "seconds": seconds, "pages_per_s": pages / seconds}


def _wait_for_worker(publisher: Any, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not publisher.sender.app.control.ping(timeout=1.0):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not answer a ping:\n{log.read_text(errors='replace')[-2000:]}")


# --- the broker ----------------------------------------------------------------------------------------------


def _broker_row(name: str, memory_url: str, broker: str | None, folder: Path, tasks: int, burst: int,
                ) -> dict[str, Any]:
    from producers.publish import Publisher
    from producers.wire.contract import INGEST_QUEUE

    settings = bench_settings(redis_url=memory_url, broker_url=broker)
    publisher = Publisher(settings)
    env = {"MEMORYOS_BROKER_URL": broker} if broker else {}
    with worker(settings, folder / f"broker-{name}.log", [INGEST_QUEUE], 4, "scale-broker", **env):
        _wait_for_worker(publisher, folder / f"broker-{name}.log")
        kick = _kick(publisher)
        for i in range(20):
            kick(f"warm-{i}")()
        latencies = []
        for i in range(tasks):
            done = kick(f"lat-{i}")
            t0 = time.perf_counter()
            done()
            latencies.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        waits = [kick(f"burst-{i}") for i in range(burst)]
        for done in waits:
            done()
        rate = burst / (time.perf_counter() - t0)
    return {"name": name, **summary(latencies), "tasks_per_s": rate, "tasks": tasks, "burst": burst}


def _kick(publisher: Any) -> Callable[..., Callable[[], None]]:
    """kick(user) sends the user's promote task with the kick flag set, and returns a wait for the worker
    to clear the flag (what a promote task does first, nothing being pending)."""
    redis = publisher.redis

    def kick(user: str) -> Callable[[], None]:
        key = publisher.keys.user(user).kick
        redis.set(key, "1", px=60_000)
        publisher.sender.promote(user)

        def done() -> None:
            deadline = time.monotonic() + 60
            while redis.exists(key):
                if time.monotonic() > deadline:
                    raise RuntimeError("a promote task was not run within 60 s")
        return done

    return kick


@contextmanager
def _rabbitmq() -> Iterator[tuple[str | None, str]]:
    """(a vhost's broker URL, '') or (None, why not)."""
    from memoryos_workers.testing.rabbitmq import Vhost, unavailable

    reason = unavailable()
    if reason:
        yield None, reason
        return
    vhost = Vhost(f"mosbench-{uuid.uuid4().hex[:8]}").create()
    try:
        yield vhost.url, ""
    finally:
        vhost.delete()


# --- the run ------------------------------------------------------------------------------------------------


def run(n: int = 2000, users: int = 50, threads: int = 4, chunk: int = 200, ingest_users: int = 10,
        ingest_turns: int = 60, tasks: int = 500, burst: int = 1000) -> dict[str, Any]:
    from memoryos_workers.testing.fake_llm import FakeLLM
    from memoryos_workers.testing.redis_cluster import PrivateCluster, ReplicatedRedis
    from memoryos_workers.testing.responders import default_responder

    load = {"before": _load()}
    folder = Path(tempfile.mkdtemp(prefix="mosbench-scale-"))
    one = ReplicatedRedis(folder / "one").start()
    cluster = PrivateCluster(folder / "cluster").start()
    llm = FakeLLM(seed=0).start()
    llm.responder = default_responder
    result: dict[str, Any] = {"n": n, "users": users, "threads": threads, "chunk": chunk}
    try:
        memories = (("one node", one.url, 0), ("one node, min replicas 1", one.url, 1),
                    ("3-master cluster", cluster.url, 0), ("3-master cluster, min replicas 1", cluster.url, 1))
        result["publish"] = [_publish_row(name, url, m, n, users, threads, chunk) for name, url, m in memories]
        load["after_publish"] = _load()
        result["ingest"] = [_ingest_row(name, url, folder, llm.base_url, ingest_users, ingest_turns)
                            for name, url in (("one node", one.url), ("3-master cluster", cluster.url))]
        load["after_ingest"] = _load()
        with _rabbitmq() as (amqp, why):
            rows = [_broker_row("Redis (memory Redis, the default)", one.url, None, folder, tasks, burst)]
            if amqp:
                rows.append(_broker_row("RabbitMQ (quorum queues, confirms)", one.url, amqp, folder, tasks, burst))
            result["broker"], result["rabbitmq_skipped"] = rows, why
        load["after_broker"] = _load()
    finally:
        llm.stop()
        cluster.stop()
        one.stop()
        shutil.rmtree(folder, ignore_errors=True)  # the workers' stores and logs
    result["load_average"] = load
    result["reproduce"] = (f"python -m bench scale --n {n} --users {users} --threads {threads} --chunk {chunk} "
                           f"--ingest-users {ingest_users} --ingest-turns {ingest_turns} --tasks {tasks} "
                           f"--burst {burst}")
    return finish("scale", result, _print)


# --- rendering ------------------------------------------------------------------------------------------------

PUBLISH_HEADERS = ("memory", "p50 ms", "p99 ms", "turns/s", "turns/s, threads", "bulk turns/s", "p50 ratio",
                   "bulk ratio")


def _publish_table(result: dict[str, Any]) -> list[tuple[str, ...]]:
    rows = {r["name"]: r for r in result["publish"]}
    base = rows["one node"]
    out = []
    for r in result["publish"]:
        ref = rows[r["name"].replace(", min replicas 1", "")] if r["min_replicas"] else base
        out.append((r["name"], fmt(r["p50_ms"], 3), fmt(r["p99_ms"], 3), fmt(r["single_rate"]),
                    fmt(r["threads_rate"]), fmt(r["bulk_rate"]), ratio(r["p50_ms"], ref["p50_ms"]),
                    ratio(r["bulk_rate"], ref["bulk_rate"])))
    return out


def _ingest_table(result: dict[str, Any]) -> list[tuple[str, ...]]:
    base = result["ingest"][0]
    return [(r["name"], fmt(r["turns"]), fmt(r["pages"]), fmt(r["seconds"]), fmt(r["pages_per_s"]),
             ratio(r["pages_per_s"], base["pages_per_s"])) for r in result["ingest"]]


def _broker_table(result: dict[str, Any]) -> list[tuple[str, ...]]:
    base = result["broker"][0]
    return [(r["name"], fmt(r["p50_ms"], 2), fmt(r["p99_ms"], 2), fmt(r["tasks_per_s"]),
             ratio(r["p50_ms"], base["p50_ms"]), ratio(r["tasks_per_s"], base["tasks_per_s"]))
            for r in result["broker"]]


INGEST_HEADERS = ("memory", "turns", "pages", "s", "pages/s", "ratio")
BROKER_HEADERS = ("broker", "task p50 ms", "task p99 ms", "tasks/s", "p50 ratio", "tasks/s ratio")


def _print(result: dict[str, Any]) -> None:
    for title, headers, rows in (("publish", PUBLISH_HEADERS, _publish_table(result)),
                                 ("ingest", INGEST_HEADERS, _ingest_table(result)),
                                 ("broker", BROKER_HEADERS, _broker_table(result))):
        print(f"\n{title}")
        print(" | ".join(headers))
        for row in rows:
            print(" | ".join(row))
    if result.get("rabbitmq_skipped"):
        print(f"RabbitMQ rows skipped: {result['rabbitmq_skipped']}")
    print(f"load average (1 min): {result['load_average']}")


def markdown(result: dict[str, Any]) -> str:
    load = result["load_average"]
    skipped = (f" RabbitMQ rows skipped: {result['rabbitmq_skipped']}." if result.get("rabbitmq_skipped") else "")
    return "\n\n".join([
        "## 13. Scaling out: Redis Cluster, RabbitMQ, min replicas",
        "Memory on one Redis (a master and its replica, as deployed today) against a private 3-master Redis "
        "Cluster (3 replicas), both on this machine, and what `MEMORYOS_PUBLISH_MIN_REPLICAS=1` (a WAIT for one "
        "replica after each publish) costs on each. Publishing from one process, no worker: "
        f"{result['n']:,} turns per column over {result['users']} users; `publish_turn` one at a time, from "
        f"{result['threads']} threads, and `publish_turns` of {result['chunk']}. Ratios: each memory row against "
        "one node; each min-replicas row against the same memory without it.",
        md_table(PUBLISH_HEADERS, _publish_table(result)),
        "Ingestion by one worker process (4 threads, the fake LLM at 0 ms, embeddings on the same 2 cores), "
        "from the first publish until every user is idle; the broker is the machine's Redis for both rows.",
        md_table(INGEST_HEADERS, _ingest_table(result)),
        "Celery's broker, memory on the one node: the memory Redis itself (the default) against RabbitMQ "
        "(quorum queues, publisher confirms). A task is a promote kick with nothing pending: latency one at a "
        "time from send to done, throughput a burst of tasks at once through a worker of 4 threads."
        + skipped,
        md_table(BROKER_HEADERS, _broker_table(result)),
        f"Load average (1 min) before the run {load['before']}, after publishing {load.get('after_publish')}, "
        f"after ingestion {load.get('after_ingest')}, after the broker rows {load.get('after_broker')}: the "
        "machine's 2 cores are shared with other engineers' test runs, so absolute figures move between runs; "
        "compare the ratios. Every node shares those cores: the cluster rows show what routing and sharding "
        "cost on one machine, not the throughput of masters on machines of their own.",
        reproduce_md(result["reproduce"]),
    ])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=2000, help="turns per publishing column")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=200, help="turns per publish_turns call")
    parser.add_argument("--ingest-users", type=int, default=10)
    parser.add_argument("--ingest-turns", type=int, default=60, help="turns per user in the ingestion rows")
    parser.add_argument("--tasks", type=int, default=500, help="tasks sent one at a time (latency)")
    parser.add_argument("--burst", type=int, default=1000, help="tasks sent at once (throughput)")

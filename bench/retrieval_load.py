"""Retrieval under load: RPC retrieval p50/p99 idle, then while other users' turns arrive at 50% and 150% of
the ingest rate measured in the same run; the share of degraded answers; and the retrieve task's own cost
beside one query embedding, with a full persona.

Setup: --targets users are written straight into the embedded store (no LLM): --pages pages each in
segments of 10, a full short-term list, a profile, 100 user facts and 100 assistant facts (the profile also
copied into Redis, as persona extraction does). The task's cost is measured in this process first: the
retriever against one query embedding (same model, same process), p50 over --cost-calls calls each.

Then one real worker process takes the store (`celery -A memoryos_workers worker -P threads -c --threads`,
every queue, this run's private key prefix; the fake LLM from the tests in this process, answering at
once). Its ingest rate is measured first: --rate-users fresh users publish --rate-turns turns at once and
the rate is the turns that reached mid-term per second until all are idle, persona work included (the
rate the backlog drains while saturated is recorded beside it). Then each phase: idle (nobody
publishes), and for each load in --loads a thread publishing other, fresh users' turns (their short-term
lists filled beforehand, so every turn becomes a page to ingest) at that share of the ingest rate. After
--warmup seconds, --retrievals RPC retrievals of the target users, one after another with --gap seconds
between, through producers' RetrievalClient with the default on_deadline (degrade) and --deadline-ms.
Every publish is timed too. At the end of each phase the backlog is read (PendingWork.backlog, what
`memoryos stats` shows), then the phase's users are waited for until idle; after the worker stops, every
turn published is checked in the store (pages) or in short-term memory.

Split by job: retrieval_load_store.py (the target users and the checks of the store), retrieval_load_traffic.py
(the load), retrieval_load_measure.py (ingest rate, retrievals, one row), retrieval_load_render.py (the table,
plot and section); this module is the entry point.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
from pathlib import Path
from typing import Any

from .common import bench_settings, cleanup, finish, worker
from .retrieval_load_measure import _ask, _ingest_rate, _phase
from .retrieval_load_render import _plot, _print, markdown  # noqa: F401 - report.py renders section 11 from here
from .retrieval_load_store import _check_store, _prepare, _task_cost


def run(targets: int = 5, pages: int = 270, threads: int = 8, loads: str = "0.5,1.5", retrievals: int = 150,
        gap: float = 0.05, deadline_ms: int = 250, warmup: float = 5.0, load_users: int = 40, rate_users: int = 40,
        rate_turns: int = 1200, cost_calls: int = 200, celery_calls: int = 30, celery_timeout: float = 5.0,
        timeout: float = 600.0, seed: int = 7) -> dict[str, Any]:
    from memoryos_workers.runtime import Runtime
    from memoryos_workers.testing.fake_llm import FakeLLM
    from memoryos_workers.testing.responders import default_responder
    from producers.retrieve import RetrievalClient
    from producers.wire.contract import ALL_QUEUES

    o = {"targets": targets, "pages": pages, "threads": threads, "loads": loads, "retrievals": retrievals, "gap": gap,
         "deadline_ms": deadline_ms, "warmup": warmup, "load_users": load_users, "rate_users": rate_users,
         "rate_turns": rate_turns, "cost_calls": cost_calls, "celery_calls": celery_calls,
         "celery_timeout": celery_timeout, "timeout": timeout, "seed": seed}
    rng = random.Random(seed)
    machine_load = {"before": os.getloadavg()}
    with FakeLLM() as llm, tempfile.TemporaryDirectory(prefix="memoryos-bench-") as tmp:
        llm.responder = default_responder
        settings = bench_settings(data_dir=Path(tmp) / "store", openai_base_url=llm.base_url, openai_api_key="bench")
        rt = Runtime(settings)
        try:
            users = _prepare(rt, targets, pages, rng)
            cost = _task_cost(rt, users, cost_calls, rng)
            rt.close()  # the worker process takes the store
            published: dict[str, int] = {}
            with worker(settings, Path(tmp) / "worker.log", ALL_QUEUES, threads, "load",
                        MEMORYOS_OPENAI_BASE_URL=llm.base_url, MEMORYOS_OPENAI_API_KEY="bench"):
                client = RetrievalClient(settings)
                for user in users * 4:  # the worker started: model loaded, the store's files read in
                    _ask(client, user, "What did I tell you about the garden?", deadline_ms=120_000,
                         on_deadline="raise")
                rate = _ingest_rate(rt, rate_users, rate_turns, timeout, rng)
                published.update(rate.pop("published"))
                phases = [_phase(rt, client, users, 0.0, rate["pages_per_s"], o, rng)]
                for load in (float(x) for x in loads.split(",") if x):
                    phases.append(_phase(rt, client, users, load, rate["pages_per_s"], o, rng))
                    published.update(phases[-1].pop("published"))
                from memoryos_workers.counters import read_counters

                counters = read_counters(rt.redis, rt.keys)
            checked = _check_store(settings, rt, published)
        finally:
            rt.close()
            cleanup(rt.redis, settings.key_prefix)
    machine_load["after"] = os.getloadavg()
    del rate["users"]
    result = {"options": o, "cost": cost, "ingest": rate, "phases": phases, "turns_checked": checked,
              "counters": {k: v for k, v in counters.items() if k.startswith(("retriev", "promote"))},
              "machine_load": machine_load, "reproduce": _command(o)}
    return finish("retrieval_load", result, _print, _plot)


def _command(o: dict[str, Any]) -> str:
    return ("python -m bench retrieval_load " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in o.items()
                                                       if k not in ("timeout",)))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--targets", type=int, default=5, help="users retrieved for (pages and a full persona each)")
    parser.add_argument("--pages", type=int, default=270, help="mid-term pages per target user")
    parser.add_argument("--threads", type=int, default=8, help="worker threads (-c)")
    parser.add_argument("--loads", default="0.5,1.5", help="shares of the measured ingest rate, comma-separated")
    parser.add_argument("--retrievals", type=int, default=150, help="retrievals per row")
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between retrievals")
    parser.add_argument("--deadline-ms", type=int, default=250, help="deadline of each retrieval")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before timing retrievals")
    parser.add_argument("--load-users", type=int, default=40, help="users publishing in each load row")
    parser.add_argument("--rate-users", type=int, default=40, help="users of the ingest-rate measurement")
    parser.add_argument("--rate-turns", type=int, default=1200, help="turns of the ingest-rate measurement")
    parser.add_argument("--cost-calls", type=int, default=200, help="calls timed for the task's cost")
    parser.add_argument("--celery-calls", type=int, default=30,
                        help="retrievals per row through the Celery retrieval task, the path before the lane; 0 = none")
    parser.add_argument("--celery-timeout", type=float, default=5.0, help="seconds each of those waits")
    parser.add_argument("--timeout", type=float, default=600.0, help="longest wait for users to go idle")
    parser.add_argument("--seed", type=int, default=7)

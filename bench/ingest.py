"""Ingestion throughput: turns per second from publish until every user is idle, for 1, 4 and 16 worker
threads with the fake LLM answering in 0 ms and in 500 ms, beside MemoryOS's inline update measured in
the same run; LLM calls and tokens per 100 promoted turns; the worker's memory (RSS).

Ours: one real worker process per thread count (`celery -A memoryos_workers worker -Q
memoryos.ingest,memoryos.persona -P threads -c N`, this run's private key prefix and a fresh data folder),
warmed up with one user's turns, then reused for every latency (the fake LLM runs in this process, so its
latency is changed between runs). Each configuration publishes --turns LoCoMo turns (both conversations,
each user reading from its own offset) round-robin over --users fresh users, then flushes every user's
partial buffer and waits until each has no pending batch and no persona work (PendingWork.wait_idle).
Flushing never empties short-term memory (it keeps the last `short_term_capacity` turns of each user,
as MemoryOS does), so the rate counts only the turns that reached the mid-term store (pages), from the
first publish until the last user is idle: pages / seconds. The page count is checked in Redis (segments'
page counts, nothing left pending or dead) and, after the worker stops, in the store; a mismatch fails.

Baseline, "MemoryOS inline": what MemoryOS does inside the chat request for every page that leaves
short-term (Updater.process_short_term_to_mid_term with one page evicted per turn): a continuity check, a
meta summary and a multi-topic summary (3 sequential chat completions through the same fake server at the
same latency, the real openai client), then one embedding of the page (the same fastembed model). It
runs in one thread, one turn at a time, and leaves out MemoryOS's JSON file rewrites and its persona
update (2 more calls per hot segment), while ours includes persona extraction (one call and the facts'
embeddings per hot segment): the comparison favours the baseline. Its prompts are short stand-ins, so its
token count is a lower bound too. With the LLM at 0 ms both sides are bound by CPU (mostly embeddings);
the worker's CPU seconds are recorded to show it.

Split by job: ingest_workload.py (the turns), ingest_baseline.py (MemoryOS inline), ingest_worker.py (ours, with
its checks), ingest_render.py (the table, plot and section); this module is the entry point.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import bench_settings, cleanup, finish
from .ingest_baseline import _inline
from .ingest_render import _plot, _print, markdown  # noqa: F401 - report.py renders section 2 from here
from .ingest_worker import _worker_runs
from .ingest_workload import _dialogue


def run(
    turns: int = 640,
    users: int = 32,
    threads: str = "1,4,16",
    latencies: str = "0,0.5",
    inline_turns: int = 10,
    inline_turns_no_latency: int = 100,
    timeout: float = 300.0,
    seed: int = 7,
) -> dict[str, Any]:
    from memoryos_workers.embeddings.embedder import get_embedder
    from memoryos_workers.runtime import Runtime
    from memoryos_workers.testing.fake_llm import FakeLLM
    from memoryos_workers.testing.responders import default_responder

    options = {"turns": turns, "users": users, "threads": threads, "latencies": latencies,
               "inline_turns": inline_turns, "inline_turns_no_latency": inline_turns_no_latency, "seed": seed}
    thread_list = [int(t) for t in threads.split(",") if t]
    latency_list = [float(x) for x in latencies.split(",") if x]
    if users < max(thread_list):
        raise ValueError(f"--users {users} < {max(thread_list)} threads: one user's work is serialised by design")
    dialogue = _dialogue()
    started = time.perf_counter()
    with FakeLLM() as llm, tempfile.TemporaryDirectory(prefix="memoryos-bench-") as tmp:
        llm.responder = default_responder
        settings = bench_settings(data_dir=Path(tmp) / "unused", openai_base_url=llm.base_url, openai_api_key="bench")
        rt = Runtime(settings)
        try:
            embedder = get_embedder(settings)
            baseline = []
            for latency in latency_list:
                llm.latency = latency
                n = inline_turns if latency > 0 else inline_turns_no_latency
                baseline.append(_inline(llm.base_url, settings.llm_model, embedder, dialogue, n, latency))
            runs = []
            for n_threads in thread_list:
                runs += _worker_runs(rt, llm, n_threads, latency_list, users, turns, dialogue, Path(tmp), timeout, seed)
        finally:
            cleanup(rt.redis, settings.key_prefix)
    result = {"options": options, "short_term_capacity": settings.short_term_capacity,
              "batch_size": settings.promotion_batch_size, "baseline": baseline, "runs": runs,
              "elapsed_s": time.perf_counter() - started, "reproduce": _command(options)}
    return finish("ingest", result, _print, _plot)


def _command(o: dict[str, Any]) -> str:
    return (f"python -m bench ingest --turns {o['turns']} --users {o['users']} --threads {o['threads']} "
            f"--latencies {o['latencies']} --inline-turns {o['inline_turns']} "
            f"--inline-turns-no-latency {o['inline_turns_no_latency']} --seed {o['seed']}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--turns", type=int, default=640, help="turns published per configuration")
    parser.add_argument("--users", type=int, default=32, help="users they are spread over (>= the most threads)")
    parser.add_argument("--threads", default="1,4,16", help="worker thread counts")
    parser.add_argument("--latencies", default="0,0.5", help="fake LLM latencies in seconds")
    parser.add_argument("--inline-turns", type=int, default=10, help="baseline turns at a latency above 0")
    parser.add_argument("--inline-turns-no-latency", type=int, default=100, help="baseline turns at latency 0")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for one user to go idle")
    parser.add_argument("--seed", type=int, default=7)

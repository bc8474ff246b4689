"""Ingestion throughput, ours (bench/ingest.py): one real worker process per thread count, warmed up, then one
row per LLM latency: publish until every user is idle, the worker's CPU time and memory, and the check that
every promoted turn is in Redis's segments and in the store."""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .common import worker
from .ingest_workload import _per_user, _turns

MIB = 1024 * 1024


def _worker(settings: Any, threads: int, log_path: Path) -> Any:
    from producers.wire.contract import INGEST_QUEUE, PERSONA_QUEUE

    return worker(settings, log_path, [INGEST_QUEUE, PERSONA_QUEUE], threads, f"ingest-{threads}",
                  MEMORYOS_OPENAI_BASE_URL=settings.openai_base_url, MEMORYOS_OPENAI_API_KEY="bench")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak since start) of one process; the threads pool is one process."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024 / MIB
    return {"rss_mib": fields["VmRSS"], "peak_rss_mib": fields["VmHWM"]}


def _warm_up(rt: Any, proc: subprocess.Popen, user: str, dialogue: Sequence[tuple[str, str]], log_path: Path,
             timeout: float) -> None:
    """One user's batch through the worker: waits until it consumes, loads the model, opens the store."""
    s = rt.settings
    n = s.short_term_capacity + s.promotion_batch_size
    rt.publisher.publish_many(_turns(dialogue, [user], n, random.Random(0)))
    deadline = time.monotonic() + timeout
    while not rt.pending.check(user, force=True).idle:
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the worker did not finish its warm-up batch (exit code {proc.poll()}):\n{tail}")
        time.sleep(0.1)


def _stats(rt: Any) -> dict[str, int]:
    from memoryos_workers.counters import read_counters

    return read_counters(rt.redis, rt.keys)


def _ingest(rt: Any, turns: Sequence[dict], users: Sequence[str], timeout: float, desc: str) -> float:
    """Seconds from the first publish until every user is idle. One publish_many per round (each user
    sends one turn), then every partial buffer is flushed before waiting, so no user waits on another's
    flush."""
    t0 = time.perf_counter()
    for start in range(0, len(turns), len(users)):
        rt.publisher.publish_many(turns[start : start + len(users)])
    for user in users:
        rt.pending.check(user, force=True)
    for user in tqdm(users, desc=f"{desc}, users idle", unit="user", leave=False):
        rt.pending.wait_idle(user, timeout=timeout, flush=True)
    return time.perf_counter() - t0


def _verify_redis(rt: Any, published: dict[str, int]) -> int:
    """Pages in segments per user must equal the turns that left short-term; nothing pending or dead."""
    capacity = rt.settings.short_term_capacity
    problems, total = [], 0
    for user, n in published.items():
        keys = rt.keys.user(user)
        segmented = sum(int(v) for v in rt.redis.hvals(keys.seg_len))
        left = {"buffered": rt.redis.llen(keys.buf), "batches": rt.redis.llen(keys.batches),
                "dead": rt.redis.llen(keys.dead)}
        stm = rt.redis.llen(keys.stm)
        if segmented != max(0, n - capacity) or any(left.values()) or stm != min(n, capacity):
            problems.append(f"{user}: {n} published, {segmented} pages in segments, short-term {stm}; {left}")
        total += segmented
    if problems:
        raise AssertionError("turns lost or stuck:\n" + "\n".join(problems[:10]))
    return total


def _verify_store(settings: Any, expected: dict[str, int]) -> int:
    """After the worker stopped (the embedded store belongs to one process): pages per user in the store,
    against the turns that left short-term."""
    from memoryos_workers.memory.pages import PAGES
    from memoryos_workers.vectorstore import open_store

    store = open_store(settings)
    try:
        counts = {u: store.count(PAGES, filter={"user_id": u}) for u in expected}
    finally:
        store.close()
    wrong = [f"{u}: {counts[u]} pages stored, expected {n}" for u, n in expected.items() if counts[u] != n]
    if wrong:
        raise AssertionError("the store does not hold every promoted turn:\n" + "\n".join(wrong[:10]))
    return sum(counts.values())


def _configuration(rt: Any, llm: Any, proc: subprocess.Popen, threads: int, latency: float, users: Sequence[str],
                   turns: Sequence[dict], timeout: float) -> dict[str, Any]:
    llm.latency = latency
    published = _per_user(turns)
    before, cpu = _stats(rt), _cpu_s(proc.pid)
    seconds = _ingest(rt, turns, users, timeout, f"{threads} thread(s) @{latency * 1000:.0f} ms")
    after, cpu = _stats(rt), _cpu_s(proc.pid) - cpu
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    pages = _verify_redis(rt, published)
    expected = {u: max(0, n - rt.settings.short_term_capacity) for u, n in published.items()}
    tokens = delta.get("llm_prompt_tokens", 0) + delta.get("llm_completion_tokens", 0)
    return {
        "threads": threads, "latency_ms": latency * 1000, "users": len(users), "turns": len(turns), "pages": pages,
        "expected": expected, "seconds": seconds, "worker_cpu_s": cpu,
        "pages_per_s": pages / seconds,
        "llm_calls": delta.get("llm_calls", 0), "llm_calls_per_100": 100 * delta.get("llm_calls", 0) / pages,
        "tokens_per_100": 100 * tokens / pages, "persona_extractions": delta.get("persona_extractions", 0),
        "segment_fallbacks": delta.get("segment_fallbacks", 0), **_rss_mib(proc.pid),
    }


def _worker_runs(rt: Any, llm: Any, threads: int, latencies: Sequence[float], n_users: int, n_turns: int,
                 dialogue: Sequence[tuple[str, str]], tmp: Path, timeout: float, seed: int) -> list[dict[str, Any]]:
    """One worker with `threads` threads and its own store, warmed up, then one run per latency."""
    settings = rt.settings.model_copy(update={"data_dir": tmp / f"store-{threads}"})
    log_path = tmp / f"worker-{threads}.log"
    rows = []
    with _worker(settings, threads, log_path) as proc:
        llm.latency = 0.0
        _warm_up(rt, proc, f"warm-{threads}", dialogue, log_path, timeout)
        warm = _rss_mib(proc.pid)["rss_mib"]
        for latency in latencies:
            users = [f"ingest-t{threads}-l{latency * 1000:.0f}-{u}" for u in range(n_users)]
            turns = _turns(dialogue, users, n_turns, random.Random(f"{seed}-{threads}-{latency}"))
            rows.append(_configuration(rt, llm, proc, threads, latency, users, turns, timeout) | {"warm_rss_mib": warm})
    stored = _verify_store(settings, {u: n for r in rows for u, n in r["expected"].items()})
    errors = [line for line in log_path.read_text(errors="replace").splitlines()
              if "ERROR" in line or "Traceback" in line]
    print(f"  {threads} thread(s): {stored} pages in the store as expected; worker log: {len(errors)} error line(s)"
          + (f", first: {errors[0][:200]}" if errors else ""))
    for row in rows:
        del row["expected"]
        row.update(store_checked=True, worker_log_errors=len(errors))
    return rows

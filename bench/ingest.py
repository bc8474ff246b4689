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
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .common import (
    ROOT,
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
    worker,
)

LOCOMO = ROOT.parent / "shared" / "data" / "locomo"
CONVERSATIONS = ("conv-26", "conv-30")
BASELINE = "MemoryOS inline"
MIB = 1024 * 1024
PLOT = "ingest_throughput.png"
HEADERS = ("", "LLM ms", "turns", "pages", "s", "CPU s", "pages/s", "ratio", "calls/100", "tokens/100", "RSS MiB",
           "peak MiB")

# --- text ----------------------------------------------------------------------------------------------


def _dialogue() -> list[tuple[str, str]]:
    """(user_input, agent_response) of every LoCoMo turn of both conversations, in order."""
    from memoryos_workers.ops.importers import locomo_turns

    turns = [t for c in CONVERSATIONS for t in locomo_turns(LOCOMO / f"{c}.json", "bench")]
    return [(t["user_input"], t["agent_response"]) for t in turns]


def _turns(dialogue: Sequence[tuple[str, str]], users: Sequence[str], n: int, rng: random.Random) -> list[dict]:
    """n turns round-robin over users; each user reads the dialogue on from its own random offset."""
    offsets = {u: rng.randrange(len(dialogue)) for u in users}
    out = []
    for i in range(n):
        user = users[i % len(users)]
        text, reply = dialogue[(offsets[user] + i // len(users)) % len(dialogue)]
        out.append({"user_id": user, "user_input": text, "agent_response": reply, "turn_id": f"{user}-{i}"})
    return out


def _per_user(turns: Sequence[dict]) -> dict[str, int]:
    """Turns published per user; all but the last `short_term_capacity` of each end as pages."""
    counts: dict[str, int] = {}
    for t in turns:
        counts[t["user_id"]] = counts.get(t["user_id"], 0) + 1
    return counts


# --- the baseline: MemoryOS's per-page update inside the request ----------------------------------------


def _inline_page(client: Any, model: str, previous: tuple[str, str], page: tuple[str, str], embedder: Any) -> int:
    """Continuity check, meta summary, multi-topic summary (sequential, as MemoryOS), then the page's
    embedding; returns the tokens the three calls used."""
    prev_text = f"User: {previous[0]}\nAssistant: {previous[1]}"
    text = f"User: {page[0]}\nAssistant: {page[1]}"
    prompts = [
        f"Previous exchange:\n{prev_text}\n\nCurrent exchange:\n{text}\n\nDoes the current exchange continue the "
        "previous one? Answer true or false.",
        f"Running summary of this dialogue chain: (none yet)\n\nNew exchange:\n{text}\n\nUpdate the running summary "
        "of the chain in a few sentences.",
        f"Conversation:\n{text}\n\nList the themes of this conversation as a JSON array of objects with theme, "
        "keywords and content (a summary).",
    ]
    tokens = 0
    for prompt in prompts:
        reply = client.chat.completions.create(model=model, messages=[
            {"role": "system", "content": "You maintain the memory of a conversational assistant."},
            {"role": "user", "content": prompt},
        ])
        tokens += reply.usage.total_tokens if reply.usage else 0
    embedder.embed([f"User: {page[0]} Assistant: {page[1]}"])
    return tokens


def _inline(base_url: str, model: str, embedder: Any, dialogue: Sequence[tuple[str, str]], n: int,
            latency: float) -> dict[str, Any]:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0)
    _inline_page(client, model, dialogue[0], dialogue[1], embedder)  # warm up: connection open
    tokens = 0
    t0 = time.perf_counter()
    for i in tqdm(range(n), desc=f"{BASELINE} @{latency * 1000:.0f} ms", unit="turn", leave=False):
        previous, page = dialogue[(i + 1) % len(dialogue)], dialogue[(i + 2) % len(dialogue)]
        tokens += _inline_page(client, model, previous, page, embedder)
    seconds = time.perf_counter() - t0
    client.close()
    return {"latency_ms": latency * 1000, "turns": n, "pages": n, "seconds": seconds, "pages_per_s": n / seconds,
            "llm_calls_per_100": 300.0, "tokens_per_100": 100 * tokens / n}


# --- ours: a real worker process --------------------------------------------------------------------------


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


# --- output -------------------------------------------------------------------------------------------------


def _table(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows of HEADERS: the baseline, then ours at each thread count, for each latency."""
    base = {b["latency_ms"]: b for b in result["baseline"]}
    rows = []
    for latency in sorted(base):
        b = base[latency]
        rows.append((f"{BASELINE} (1 thread)", fmt(latency, 0), fmt(b["turns"]), fmt(b["pages"]), fmt(b["seconds"], 1),
                     "—", fmt(b["pages_per_s"]), ratio(b["pages_per_s"], b["pages_per_s"]),
                     fmt(b["llm_calls_per_100"], 0), fmt(b["tokens_per_100"], 0), "—", "—"))
        for r in (r for r in result["runs"] if r["latency_ms"] == latency):
            name = f"memoryos-workers, {r['threads']} thread" + ("s" if r["threads"] > 1 else "")
            rows.append((name, fmt(latency, 0), fmt(r["turns"]), fmt(r["pages"]), fmt(r["seconds"], 1),
                         fmt(r["worker_cpu_s"], 1), fmt(r["pages_per_s"]), ratio(r["pages_per_s"], b["pages_per_s"]),
                         fmt(r["llm_calls_per_100"], 1), fmt(r["tokens_per_100"], 0), fmt(r["warm_rss_mib"], 0),
                         fmt(r["peak_rss_mib"], 0)))
    return rows


def _print(result: dict[str, Any]) -> None:
    o = result["options"]
    print(f"\ningestion throughput: {o['turns']} turns over {o['users']} users per configuration, short-term "
          f"capacity {result['short_term_capacity']}, batch size {result['batch_size']}; pages/s = turns that reached "
          "mid-term / seconds from first publish to all users idle; ratio = pages/s / MemoryOS inline at the same "
          "latency; calls and tokens per 100 promoted turns")
    widths = (34, 7, 6, 6, 7, 7, 9, 8, 10, 11, 8, 9)
    print(" ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(HEADERS, widths, strict=True))))
    for row in _table(result):
        print(" ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    fallbacks = sum(r["segment_fallbacks"] for r in result["runs"])
    persona = sum(r["persona_extractions"] for r in result["runs"])
    print(f"persona extractions {persona}, segmentation fallbacks {fallbacks}; CPU s = the worker's user + system "
          "time during the run; RSS = worker after warm-up, peak = its VmHWM after the run (it only grows)")


def _plot(result: dict[str, Any]) -> Path:
    plt = pyplot()
    fig, (ax, mem) = plt.subplots(1, 2, figsize=(10, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    for i, b in enumerate(result["baseline"]):
        runs = [r for r in result["runs"] if r["latency_ms"] == b["latency_ms"]]
        ax.plot([r["threads"] for r in runs], [r["pages_per_s"] for r in runs], "o-", color=f"C{i}",
                label=f"memoryos-workers, LLM {b['latency_ms']:.0f} ms")
        ax.axhline(b["pages_per_s"], color=f"C{i}", ls="--", lw=1, label=f"{BASELINE}, LLM {b['latency_ms']:.0f} ms")
    threads = sorted({r["threads"] for r in result["runs"]})
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(threads, [str(t) for t in threads])
    ax.set_xlabel("worker threads (one process)")
    ax.set_ylabel("turns reaching mid-term per second")
    ax.set_title("ingestion throughput, publish to idle")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    warm = [next(r["warm_rss_mib"] for r in result["runs"] if r["threads"] == t) for t in threads]
    peak = [max(r["peak_rss_mib"] for r in result["runs"] if r["threads"] == t) for t in threads]
    labels = [str(t) for t in threads]
    mem.bar(labels, warm, label="after warm-up")
    mem.bar(labels, [p - w for p, w in zip(peak, warm, strict=True)], bottom=warm, alpha=0.6, label="peak (VmHWM)")
    mem.set_xlabel("worker threads")
    mem.set_ylabel("MiB")
    mem.set_title("worker memory (RSS)")
    mem.legend(fontsize=8)
    mem.grid(axis="y", alpha=0.3)
    return save_figure(fig, PLOT)


def _command(o: dict[str, Any]) -> str:
    return (f"python -m bench ingest --turns {o['turns']} --users {o['users']} --threads {o['threads']} "
            f"--latencies {o['latencies']} --inline-turns {o['inline_turns']} "
            f"--inline-turns-no-latency {o['inline_turns_no_latency']} --seed {o['seed']}")


def markdown(result: dict[str, Any]) -> str:
    o = result["options"]
    latencies = " or ".join(fmt(b["latency_ms"], 0) for b in result["baseline"])
    return "\n\n".join([
        "## 2. Ingestion throughput",
        f"Turns per second from the first publish until every user is idle (batches promoted, persona work done): "
        f"{o['turns']:,} LoCoMo turns over {o['users']} users per row, one real Celery worker process "
        f"(`-P threads -c N`), the fake LLM answering after {latencies} ms. Only turns that reached the mid-term "
        f"store count (each user keeps its last {result['short_term_capacity']} turns in short-term); every one "
        "was checked in Redis and in the store. "
        "Baseline from the same run: MemoryOS's inline update, 3 sequential LLM calls (continuity, meta summary, "
        "topic summary) and one embedding per promoted turn, in one thread, without its persona update (ours "
        "includes persona extraction); ratio = pages/s against it at the same latency.",
        md_table(HEADERS, _table(result)),
        "Calls and tokens per 100 promoted turns (the baseline's prompts are short stand-ins, so its tokens are a "
        "lower bound). CPU s: the worker's user + system time during the row. RSS: the worker process after "
        "warm-up; peak: its VmHWM after the row.",
        image_md("ingestion throughput", PLOT),
        reproduce_md(result["reproduce"]),
    ])


# --- entry point ---------------------------------------------------------------------------------------------


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--turns", type=int, default=640, help="turns published per configuration")
    parser.add_argument("--users", type=int, default=32, help="users they are spread over (>= the most threads)")
    parser.add_argument("--threads", default="1,4,16", help="worker thread counts")
    parser.add_argument("--latencies", default="0,0.5", help="fake LLM latencies in seconds")
    parser.add_argument("--inline-turns", type=int, default=10, help="baseline turns at a latency above 0")
    parser.add_argument("--inline-turns-no-latency", type=int, default=100, help="baseline turns at latency 0")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for one user to go idle")
    parser.add_argument("--seed", type=int, default=7)

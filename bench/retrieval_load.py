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
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .common import (
    bench_settings,
    cleanup,
    finish,
    fmt,
    image_md,
    md_table,
    percentile,
    pyplot,
    reproduce_md,
    save_figure,
    summary,
    worker,
)

PLOT = "retrieval_load.png"


# --- the store: target users with pages, segments and a full persona ---------------------------------------


def _facts(rng: random.Random, n: int, who: str) -> list[Any]:
    """n distinct everyday facts (distinct enough that none is taken for a near-duplicate of another)."""
    from schemas.persona import Fact

    from .retrieval import _ACTIONS, _PEOPLE, _THINGS, _WHEN

    seen: set[str] = set()
    while len(seen) < n:
        seen.add(f"{who} {rng.choice(_ACTIONS)} {rng.choice(_THINGS)} with {rng.choice(_PEOPLE)} "
                 f"{rng.choice(_WHEN)}, fact {len(seen)}")
    return [Fact(text=text, date=f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}") for i, text in enumerate(sorted(seen))]


def _persona(rt: Any, user: str, rng: random.Random) -> None:
    """A profile (also copied into Redis, as persona extraction does), 100 user and 100 assistant facts."""
    from producers.wire import state
    from schemas.persona import Trait, UserProfile

    from .retrieval import _THINGS

    traits = [Trait(dimension=f"interest: {thing}", level=rng.choice(["low", "medium", "high"]),
                    evidence=f"Talks about {thing} often.") for thing in rng.sample(_THINGS, 8)]
    profile = UserProfile(user_id=user, summary="Curious, busy, close to family; plans a lot and likes the outdoors.",
                          traits=traits, updated_at=time.time())
    rt.persona.put_profile(profile)
    state.save_profile_copy(rt.redis, rt.keys.user(user), profile.model_dump_json())
    capacity = 100
    for kind, assistant, who in (("user", None, "The user"), ("assistant", rt.settings.assistant_id, "I")):
        added = rt.persona.add_facts(kind, user, assistant, _facts(rng, capacity + 10, who), {"source": "bench"},
                                     capacity)
        if added["added"] < capacity:
            raise RuntimeError(f"only {added['added']} {kind} facts stored for {user}; expected {capacity}")


def _prepare(rt: Any, targets: int, pages: int, rng: random.Random) -> list[str]:
    from .retrieval import build_store

    build_store(rt, targets, pages, rng)
    users = [f"bench-{u}" for u in range(targets)]
    for user in tqdm(users, desc="persona per target", unit="user", leave=False):
        _persona(rt, user, rng)
    return users


def _task_cost(rt: Any, users: Sequence[str], calls: int, rng: random.Random) -> dict[str, Any]:
    """The retriever's own time against one query embedding, both in this process, warm."""
    from .retrieval import _query

    retriever, embedder = rt.retriever, rt.embedder
    queries = [(rng.choice(users), _query(rng)) for _ in range(calls)]
    for user, query in queries[:30]:
        retriever.retrieve_for(user, query)
    embed, total, stages = [], [], {}
    for user, query in queries:
        t0 = time.perf_counter()
        embedder.embed_query(query)
        embed.append(time.perf_counter() - t0)
        context = retriever.retrieve_for(user, query)
        total.append(context.timings_ms["total"] / 1000)
        for name, ms in context.timings_ms.items():
            stages.setdefault(name, []).append(ms)
    sample = rt.retriever.retrieve_for(users[0], queries[0][1])
    return {"embed": summary(embed), "retrieve": summary(total),
            "stages_p50_ms": {k: percentile(v, 50) for k, v in stages.items()},
            "persona": {"profile": sample.user_profile is not None, "user_facts": len(sample.user_knowledge),
                        "assistant_facts": len(sample.assistant_knowledge), "pages": len(sample.pages)}}


# --- load ------------------------------------------------------------------------------------------------------


class _Load(threading.Thread):
    """Publishes turns at `rate` turns/s, one publish per turn, timing each: `block` turns to one user, then
    the next user's (round-robin), so every `block` turns complete a batch whatever the rate and the number
    of users (spread one turn per user in turn, a slow load left every user short of a batch: no ingestion)."""

    def __init__(self, publisher: Any, users: Sequence[str], rate: float, rng: random.Random, block: int = 10,
                 ) -> None:
        super().__init__(name="bench-load", daemon=True)
        self.publisher, self.users, self.rate, self.rng, self.block = publisher, list(users), rate, rng, block
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.published: dict[str, int] = dict.fromkeys(self.users, 0)
        self.errors: list[str] = []

    def run(self) -> None:
        from .retrieval import _turn

        started, sent = time.monotonic(), 0
        while not self.stop.is_set():
            due = int((time.monotonic() - started) * self.rate)
            while sent < due and not self.stop.is_set():
                user = self.users[(sent // self.block) % len(self.users)]
                text, reply = _turn(self.rng)
                t0 = time.perf_counter()
                try:
                    self.publisher.publish({"user_id": user, "user_input": text, "agent_response": reply})
                    self.published[user] += 1
                except Exception as exc:  # noqa: BLE001 - counted and shown, the load goes on
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                self.latencies.append(time.perf_counter() - t0)
                sent += 1
            self.stop.wait(0.005)


def _fresh_users(rt: Any, prefix: str, n: int, rng: random.Random) -> list[str]:
    """Users whose short-term list is full already (no batch yet), so each further turn is a page to ingest."""
    from .retrieval import _turn

    users = [f"{prefix}-{i}" for i in range(n)]
    turns = [{"user_id": u, **dict(zip(("user_input", "agent_response"), _turn(rng), strict=True))}
             for u in users for _ in range(rt.settings.short_term_capacity)]
    rt.publisher.publish_many(turns)
    return users


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


def _check_store(settings: Any, rt: Any, published: dict[str, int]) -> int:
    """After the worker stopped: every turn published is a page in the store or in short-term memory."""
    from memoryos_workers.memory.pages import PAGES
    from memoryos_workers.vectorstore import open_store

    capacity = rt.settings.short_term_capacity
    store = open_store(settings)
    try:
        wrong = []
        for user, n in published.items():
            stored = store.count(PAGES, filter={"user_id": user})
            stm = rt.redis.llen(rt.keys.user(user).stm)
            if stored + stm != n or stm != min(n, capacity):
                wrong.append(f"{user}: {n} published, {stored} stored, {stm} in short-term")
    finally:
        store.close()
    if wrong:
        raise AssertionError("turns lost or doubled:\n" + "\n".join(wrong[:10]))
    return sum(published.values())


# --- entry point ---------------------------------------------------------------------------------------------


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


# --- output -------------------------------------------------------------------------------------------------

HEADERS = ("load", "turns/s published", "p50 ms", "p99 ms", "p99 / idle p99", "degraded", "exceptions",
           "Celery path p50 / p99 ms (timeouts)", "publish p50 / p99 ms", "batches formed",
           "backlog pages (oldest s)", "drained after, pages/s")


def _table(result: dict[str, Any]) -> list[tuple[str, ...]]:
    idle = result["phases"][0]["latency"]["p99_ms"]
    rows = []
    for p in result["phases"]:
        load = "idle" if not p["load"] else f"{p['load'] * 100:.0f}% of ingest"
        publish = f"{p['publish']['p50_ms']:.2f} / {p['publish']['p99_ms']:.2f}" if "publish" in p else "—"
        backlog = f"{p['backlog']['pages']:,} ({p['backlog']['oldest_s']:.0f})" if "backlog" in p else "—"
        drain = (f"{fmt(p['drain_pages_per_s'], 1)} ({p['drain_s']:.1f} s)" if "drain_s" in p else "—")
        celery = p.get("celery_path")
        celery_cell = (f"{celery['latency']['p50_ms']:.1f} / {celery['latency']['p99_ms']:.1f} ({celery['timeouts']})"
                       if celery else "—")
        rows.append((load, fmt(p.get("achieved_turns_per_s"), 1) if p["load"] else "0",
                     fmt(p["latency"]["p50_ms"], 1), fmt(p["latency"]["p99_ms"], 1),
                     f"{p['latency']['p99_ms'] / idle:.2f}x", f"{p['degraded_share'] * 100:.0f}%",
                     str(p["exceptions"]), celery_cell, publish, str(p.get("batches_formed", "—")), backlog, drain))
    return rows


def _floors(result: dict[str, Any]) -> list[str]:
    idle = result["phases"][0]["latency"]["p99_ms"]
    deadline = result["options"]["deadline_ms"]
    lines = []
    for p in result["phases"][1:]:
        if p["load"] <= 1:
            ok = p["latency"]["p99_ms"] <= 2 * idle
            lines.append(f"{p['load'] * 100:.0f}% load: p99 {p['latency']['p99_ms']:.1f} ms against 2x idle p99 "
                         f"{2 * idle:.1f} ms: {'met' if ok else 'NOT met'}")
        else:
            ok = p["exceptions"] == 0 and p["latency"]["p99_ms"] <= deadline + 20
            lines.append(f"{p['load'] * 100:.0f}% load: {p['exceptions']} exceptions, p99 {p['latency']['p99_ms']:.1f} "
                         f"ms against deadline + 20 = {deadline + 20} ms: {'met' if ok else 'NOT met'}")
    cost = result["cost"]
    ratio = cost["retrieve"]["p50_ms"] / cost["embed"]["p50_ms"]
    lines.append(f"retrieve task p50 {cost['retrieve']['p50_ms']:.1f} ms = {ratio:.2f}x one query embedding "
                 f"({cost['embed']['p50_ms']:.1f} ms) against 3x: {'met' if ratio <= 3 else 'NOT met'}")
    return lines


def _load_note(result: dict[str, Any]) -> str:
    m = result["machine_load"]
    cpus = os.cpu_count() or 1
    busy = max(m["before"][0], m["after"][0]) > cpus
    return (f"Machine load average (1/5/15 min) before: {'/'.join(f'{x:.1f}' for x in m['before'])}, after: "
            f"{'/'.join(f'{x:.1f}' for x in m['after'])} on {cpus} CPUs"
            + (": busy with other runs, so absolute times are inflated." if busy else "."))


def _print(result: dict[str, Any]) -> None:
    r = result["ingest"]
    print(f"\nretrieval under load: ingest rate {r['pages_per_s']:.1f} pages/s ({r['pages']} pages from publish to "
          f"idle in {r['seconds']:.1f} s; the backlog drained at {r['saturated_drain_pages_per_s']:.1f} pages/s while "
          f"saturated; {result['options']['threads']} worker threads, fake LLM at 0 ms)")
    widths = (18, 18, 8, 8, 15, 9, 11, 36, 20, 15, 24, 22)
    print(" ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(HEADERS, widths, strict=True))))
    for row in _table(result):
        print(" ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    c = result["cost"]
    print(f"task cost: {c['stages_p50_ms']}; persona in the answer: {c['persona']}")
    for p in result["phases"]:
        if p["reasons"] or p["first_exception"]:
            print(f"  load {p['load']}: degraded by reason {p['reasons']} {p['first_exception']}")
    print("\n".join(_floors(result)))
    print(f"{result['turns_checked']:,} turns checked in the store and short-term after the run")
    print(_load_note(result))


def _plot(result: dict[str, Any]) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    phases = result["phases"]
    xs = [p["load"] * 100 for p in phases]
    ax.plot(xs, [p["latency"]["p50_ms"] for p in phases], "o-", label="p50")
    ax.plot(xs, [p["latency"]["p99_ms"] for p in phases], "s-", label="p99")
    deadline = result["options"]["deadline_ms"]
    celery = [p for p in phases if p.get("celery_path")]
    if celery:
        ax.plot([p["load"] * 100 for p in celery], [p["celery_path"]["latency"]["p99_ms"] for p in celery], "x:",
                color="C3", label="p99, Celery task path (before the lane)")
        ax.set_yscale("log")
    ax.axhline(deadline, color="grey", ls="--", lw=1, label=f"deadline {deadline} ms")
    ax.axhline(2 * phases[0]["latency"]["p99_ms"], color="C1", ls=":", lw=1, label="2x idle p99")
    for p, x in zip(phases, xs, strict=True):
        ax.annotate(f"{p['degraded_share'] * 100:.0f}% degraded", (x, p["latency"]["p99_ms"]),
                    textcoords="offset points", xytext=(4, 6), fontsize=8)
    ax.set_xlabel("other users' turns, % of the ingest rate measured in the run")
    ax.set_ylabel("RPC retrieval latency (ms)")
    ax.set_title("retrieval latency against ingestion load")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, PLOT)


def markdown(result: dict[str, Any]) -> str:
    o, c, r = result["options"], result["cost"], result["ingest"]
    return "\n\n".join([
        "## 11. Retrieval under load",
        f"RPC retrieval (`producers` RetrievalClient, deadline {o['deadline_ms']} ms, degrade on deadline) of "
        f"{o['targets']} users with {o['pages']} pages each in segments, a profile, 100 user and 100 assistant facts, "
        f"answered by one worker process (`-P threads -c {o['threads']}`, every queue, embedded store, the fake LLM "
        f"answering at once) while other users' turns arrive at a share of the ingest rate measured in the same run: "
        f"{r['pages_per_s']:.1f} pages/s, a burst of {r['pages']:,} pages from publish until every user is idle, "
        f"persona work included ({r['seconds']:.1f} s; while saturated the backlog drained at "
        f"{r['saturated_drain_pages_per_s']:.1f} pages/s, a drain then covering several batches of a user). "
        f"{o['retrievals']} retrievals per row, {o['gap'] * 1000:.0f} ms apart, after {o['warmup']:g} s of load; "
        "Each row's turns go ten at a time to one user (one batch each), so the row has the ingestion it names "
        "(*batches formed*); the backlog is read at the end of the row (`memoryos stats`) and its drain rate "
        "measured after it, the load stopped; every published turn checked in the store or "
        f"short-term afterwards ({result['turns_checked']:,}). Celery path: {o['celery_calls']} retrievals per row "
        "sent as the `memoryos.retrieve` Celery task instead, served by the worker pool that ingestion shares (the "
        f"path before the retrieval lane; {o['celery_timeout']:g} s timeout each, timeouts counted at that time).",
        md_table(HEADERS, _table(result)),
        "Floors: " + "; ".join(_floors(result)) + ".",
        f"The retrieve task's own cost, in-process: p50 {c['retrieve']['p50_ms']:.1f} ms against one query embedding "
        f"{c['embed']['p50_ms']:.1f} ms; stages p50 (ms): "
        + ", ".join(f"{k} {v:.2f}" for k, v in c["stages_p50_ms"].items()) + ".",
        _load_note(result),
        image_md("retrieval latency against load", PLOT),
        reproduce_md(result["reproduce"]),
    ])


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

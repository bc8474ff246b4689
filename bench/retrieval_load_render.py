"""Retrieval under load, the output (bench/retrieval_load.py): the table, the floors it is held to, the console
summary, the plot and section 11 of BENCHMARKS.md, all from the saved result alone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .common import fmt, image_md, md_table, pyplot, reproduce_md, save_figure

PLOT = "retrieval_load.png"

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

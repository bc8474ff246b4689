"""Ingestion throughput, the output (bench/ingest.py): the table, the console summary, the plot and section 2
of BENCHMARKS.md, all from the saved result alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import fmt, image_md, md_table, pyplot, ratio, reproduce_md, save_figure
from .ingest_baseline import BASELINE

PLOT = "ingest_throughput.png"
HEADERS = ("", "LLM ms", "turns", "pages", "s", "CPU s", "pages/s", "ratio", "calls/100", "tokens/100", "RSS MiB",
           "peak MiB")


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

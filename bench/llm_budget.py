"""The shared LLM token budget: the token rate several workers reach against MEMORYOS_LLM_TOKENS_PER_MINUTE.

Client threads each with their own Redis connection, budget object and openai client (they share
only the budget's Redis key, as worker processes do) call the tests' fake OpenAI-compatible server,
answering at once, with segmentation prompts, for a fixed time per row. The minute's burst is spent
before the clock starts, so what is measured is the steady rate. Baseline from the same run: the
same threads with no budget.
"""

from __future__ import annotations

import argparse
import threading
import time
from datetime import datetime, timezone
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
    pyplot,
    ratio,
    reproduce_md,
    save_figure,
)


def _messages(n_pages: int) -> list[dict[str, str]]:
    from memoryos_workers.pipeline.prompts import segmentation_messages
    from schemas.turns import Page

    pages = [
        Page(seq=i + 1, user_id="budget", turn_id=f"t{i}", user_input=f"Day {i}: my pottery class made a bowl",
             agent_response=f"A bowl on day {i}, lovely! Glazed or raw?",
             timestamp=datetime(2025, 5, 1, 10, i, tzinfo=timezone.utc))
        for i in range(n_pages)
    ]
    return segmentation_messages(pages, None, [])


def _row(base_url: str, tpm: int, threads: int, seconds: float, pages: int, reserve: int) -> dict[str, Any]:
    """Calls from `threads` clients for `seconds`; tpm 0 = no budget. Returns the events and the rate."""
    import redis

    from memoryos_workers.llm.client import LLMClient
    from memoryos_workers.llm.token_budget import TokenBudget
    from memoryos_workers.pipeline.answer_schemas import AnyJSON, segmentation_schema
    from producers.wire.keys import Keys

    settings = bench_settings(openai_base_url=base_url, openai_api_key="bench", llm_completion_reserve=reserve,
                              llm_tokens_per_minute=tpm, llm_rate_limit_max_wait=600)
    key = Keys(settings.key_prefix).llm_budget
    messages, schema = _messages(pages), segmentation_schema(pages)
    events: list[tuple[float, int]] = []  # (seconds since start, tokens the provider reported)
    lock = threading.Lock()
    connections = [redis.Redis.from_url(settings.redis_url) for _ in range(threads)]
    if tpm:
        TokenBudget(connections[0], key, tpm, max_wait=600).reserve(tpm)  # the burst is spent: steady state
    started = time.monotonic()
    deadline = started + seconds

    def client_thread(connection: redis.Redis) -> None:
        budget = TokenBudget(connection, key, tpm, max_wait=600) if tpm else None
        client = LLMClient(settings, budget=budget)
        while time.monotonic() < deadline:
            usage = client.structured(messages, AnyJSON, name="segmentation", schema=schema).usage
            with lock:
                events.append((time.monotonic() - started, usage.prompt_tokens + usage.completion_tokens))

    workers = [threading.Thread(target=client_thread, args=(c,)) for c in connections]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for c in connections:
        c.close()
    cleanup(redis.Redis.from_url(settings.redis_url), settings.key_prefix)
    events.sort()
    inside = [e for e in events if e[0] <= seconds]
    # The slope between the first and the last call inside the window: no edge effects from the start
    # (the first wait) or the end (calls granted after the deadline).
    span = inside[-1][0] - inside[0][0] if len(inside) > 1 else 0.0
    tokens = sum(t for _, t in inside[1:])
    rate = 60 * tokens / span if span else 0.0
    return {
        "tokens_per_minute": tpm, "threads": threads, "seconds": seconds, "calls": len(inside),
        "mean_tokens_per_call": sum(t for _, t in inside) / max(1, len(inside)),
        "achieved_per_minute": rate, "events": [(round(t, 3), n) for t, n in events],
    }


def run(budgets: str = "30000,60000,120000", threads: int = 4, seconds: float = 20.0, baseline_seconds: float = 5.0,
        pages: int = 10, reserve: int = 256) -> dict[str, Any]:
    from memoryos_workers.testing.fake_llm import FakeLLM
    from memoryos_workers.testing.responders import default_responder

    tpms = [int(b) for b in budgets.split(",") if b]
    rows = []
    with FakeLLM() as llm:
        llm.responder = default_responder
        for tpm in tqdm([0, *tpms], desc="token budget", unit="row"):
            rows.append(_row(llm.base_url, tpm, threads, baseline_seconds if tpm == 0 else seconds, pages, reserve))
    result: dict[str, Any] = {
        "threads": threads, "seconds": seconds, "pages": pages, "reserve": reserve, "rows": rows,
        "reproduce": f"python -m bench llm_budget --budgets {','.join(map(str, tpms))} --threads {threads} "
                     f"--seconds {seconds:g} --baseline-seconds {baseline_seconds:g} --pages {pages} "
                     f"--reserve {reserve}",
    }
    return finish("llm_budget", result, _print, _plot)


HEADERS = ("budget (tokens/min)", "client threads", "seconds", "calls", "tokens per call", "achieved tokens/min",
           "achieved / budget", "achieved / no budget")


def _table(result: dict[str, Any]) -> list[tuple[Any, ...]]:
    rows = result["rows"]
    free = next((r["achieved_per_minute"] for r in rows if not r["tokens_per_minute"]), None)
    return [
        ("none (baseline)" if not r["tokens_per_minute"] else f"{r['tokens_per_minute']:,}", r["threads"],
         fmt(r["seconds"], 0), r["calls"], fmt(r["mean_tokens_per_call"], 0), fmt(r["achieved_per_minute"], 0),
         ratio(r["achieved_per_minute"], r["tokens_per_minute"]) if r["tokens_per_minute"] else "—",
         ratio(r["achieved_per_minute"], free, 3))
        for r in rows
    ]


def _print(result: dict[str, Any]) -> None:
    print(f"\nShared LLM token budget, {result['threads']} client threads (fake LLM at 0 ms)")
    print(md_table(HEADERS, _table(result)))


def _plot(result: dict[str, Any]) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for row, colour in zip([r for r in result["rows"] if r["tokens_per_minute"]],
                           ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"), strict=False):
        times, total, cumulative = [], 0, []
        for t, n in row["events"]:
            if t > row["seconds"]:
                break
            total += n
            times.append(t)
            cumulative.append(total)
        ax.step(times, cumulative, where="post", color=colour,
                label=f"{row['tokens_per_minute']:,}/min: {row['achieved_per_minute']:,.0f} reached")
        ax.plot([0, row["seconds"]], [0, row["tokens_per_minute"] * row["seconds"] / 60], "--", color=colour,
                alpha=0.6)
    ax.set_xlabel("seconds (the minute's burst spent before 0)")
    ax.set_ylabel("tokens used, all client threads")
    ax.set_title(f"Shared token budget, {result['threads']} clients (dashed: the budget)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, "llm_budget.png")


def markdown(result: dict[str, Any]) -> str:
    return "\n\n".join([
        "## 7. LLM token budget",
        f"The rate {result['threads']} LLM clients reach together under `MEMORYOS_LLM_TOKENS_PER_MINUTE`. Each "
        "client thread has its own Redis connection, budget object and openai client, so they share only the "
        "budget's Redis key, as worker processes do. They call the tests' fake OpenAI-compatible server, which "
        f"answers at once, with a segmentation prompt of {result['pages']} pages, for {result['seconds']:g} s "
        "per row. A call reserves its estimate (the prompt's token count, calibrated per model by the usage "
        f"reported, plus `MEMORYOS_LLM_COMPLETION_RESERVE`={result['reserve']}) and is corrected to the reported usage "
        "afterwards. The minute's burst is spent before the clock starts, so the rows show the steady rate: "
        "tokens reported between the first and the last call in the window, per minute. Baseline from the "
        "same run: the same clients with no budget.",
        md_table(HEADERS, _table(result)),
        image_md("tokens used against the budget", "llm_budget.png"),
        reproduce_md(result["reproduce"]),
    ])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budgets", default="30000,60000,120000", help="tokens per minute, comma-separated")
    parser.add_argument("--threads", type=int, default=4, help="client threads sharing the budget")
    parser.add_argument("--seconds", type=float, default=20.0, help="time per budget row")
    parser.add_argument("--baseline-seconds", type=float, default=5.0, help="time of the row with no budget")
    parser.add_argument("--pages", type=int, default=10, help="pages in each segmentation prompt")
    parser.add_argument("--reserve", type=int, default=256, help="MEMORYOS_LLM_COMPLETION_RESERVE for the run")

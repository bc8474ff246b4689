"""LLM calls and tokens per 100 ingested turns on LoCoMo conversations, beside MemoryOS's per-page scheme
(3 calls per promoted page: continuity check, meta summary, topic summary).

The LLM is the fake OpenAI-compatible server from the tests (real HTTP, the real openai client),
answering competently; what is counted is how many calls our pipeline makes, which does not depend
on the model. Workers run in-process (the promote task's code, without the broker).
"""

from __future__ import annotations

import argparse
import tempfile
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
)

LOCOMO = ROOT.parent / "shared" / "data" / "locomo"
MEMORYOS_CALLS_PER_PAGE = 3


def _conversation(conversation: str, batch_size: int) -> dict[str, Any]:
    from memoryos_workers.ops.importers import locomo_turns
    from memoryos_workers.runtime import Runtime
    from memoryos_workers.testing.fake_llm import FakeLLM
    from memoryos_workers.testing.responders import default_responder

    path = LOCOMO / f"{conversation}.json"
    with FakeLLM() as llm, tempfile.TemporaryDirectory() as tmp:
        llm.responder = default_responder
        settings = bench_settings(
            data_dir=Path(tmp), openai_base_url=llm.base_url, openai_api_key="bench", promotion_batch_size=batch_size
        )
        rt = Runtime(settings)
        user = "locomo-bench"
        try:
            turns = locomo_turns(path, user)
            promoter = rt.promoter
            persona = rt.persona_worker
            for start in tqdm(range(0, len(turns), batch_size), desc=f"ingest {conversation}", unit="batch",
                              leave=False):
                rt.publisher.publish_many(turns[start : start + batch_size])
                promoter.run(user)
                persona.extract(user)  # what the persona worker does after each drain
            stats = {k: int(v) for k, v in rt.redis.hgetall(rt.keys.stats).items()}
            promoted = rt.pages.count(user)
        finally:
            rt.close()
            cleanup(rt.redis, settings.key_prefix)
    n = len(turns)
    calls = stats.get("llm_calls", 0)
    prompt, completion = stats.get("llm_prompt_tokens", 0), stats.get("llm_completion_tokens", 0)
    persona_calls = stats.get("persona_extractions", 0)
    memoryos_calls = MEMORYOS_CALLS_PER_PAGE * promoted
    return {
        "conversation": conversation, "turns": n, "promoted_pages": promoted, "llm_calls": calls,
        "calls_per_100_turns": 100 * calls / n, "tokens_per_100_turns": 100 * (prompt + completion) / n,
        "prompt_tokens_per_100_turns": 100 * prompt / n, "completion_tokens_per_100_turns": 100 * completion / n,
        "memoryos_calls": memoryos_calls, "memoryos_calls_per_100_turns": 100 * memoryos_calls / n,
        "fallbacks": stats.get("segment_fallbacks", 0), "persona_calls": persona_calls,
        "segmentation_calls": calls - persona_calls,
    }


def run(conversations: str = "conv-26,conv-30", batch_size: int = 10) -> dict[str, Any]:
    names = [c for c in conversations.split(",") if c]
    rows = [_conversation(c, batch_size) for c in names]
    result: dict[str, Any] = {
        "batch_size": batch_size, "conversations": rows,
        "reproduce": f"python -m bench llm_cost --conversations {','.join(names)} --batch-size {batch_size}",
    }
    return finish("llm_cost", result, _print, _plot)


HEADERS = ("conversation", "turns", "promoted pages", "MemoryOS calls / 100 turns", "ours: calls / 100 turns",
           "ours / MemoryOS", "of which segmentation", "of which persona", "tokens / 100 turns", "fallbacks")


def _table(result: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(r["conversation"], r["turns"], r["promoted_pages"], fmt(r["memoryos_calls_per_100_turns"], 1),
             fmt(r["calls_per_100_turns"], 1), ratio(r["calls_per_100_turns"], r["memoryos_calls_per_100_turns"]),
             r["segmentation_calls"], r["persona_calls"], fmt(r["tokens_per_100_turns"], 0), r["fallbacks"])
            for r in result["conversations"]]


def _print(result: dict[str, Any]) -> None:
    print(f"\nLLM cost of ingestion, batch size {result['batch_size']} (calls counted; fake LLM)")
    widths = (13, 6, 9, 12, 12, 9, 8, 8, 11, 9)
    short = ("conversation", "turns", "promoted", "MemoryOS/100", "ours/100", "ratio", "segm.", "persona",
             "tokens/100", "fallbacks")
    print(" ".join(h.rjust(w) for h, w in zip(short, widths, strict=True)))
    for row in _table(result):
        print(" ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)))
    print("MemoryOS per-page scheme: 3 calls per promoted page; tokens: the fake LLM's count (~4 chars/token)")
    print("floor: at most 20 calls per 100 turns at the default batch size")


def _plot(result: dict[str, Any]) -> Path:
    plt = pyplot()
    rows = result["conversations"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    x = range(len(rows))
    memoryos = ax.bar([i - 0.2 for i in x], [r["memoryos_calls_per_100_turns"] for r in rows], 0.4,
                      label="MemoryOS per-page (3 calls per page)", color="tab:grey")
    ours = ax.bar([i + 0.2 for i in x], [r["calls_per_100_turns"] for r in rows], 0.4,
                  label="memoryos-workers (batch + persona)", color="tab:blue")
    ax.bar_label(memoryos, fmt="%.0f", fontsize=8)
    ax.bar_label(ours, fmt="%.1f", fontsize=8)
    ax.set_xticks(list(x), [f"LoCoMo {r['conversation']}\n({r['turns']} turns)" for r in rows])
    ax.set_ylabel("LLM calls per 100 ingested turns")
    ax.set_title(f"LLM calls of ingestion (batch size {result['batch_size']})")
    ax.set_ylim(0, 1.3 * max(r["memoryos_calls_per_100_turns"] for r in rows))
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, "llm_cost.png")


def markdown(result: dict[str, Any]) -> str:
    return "\n\n".join([
        "## 5. LLM cost of ingestion",
        "LLM calls and tokens per 100 turns when a LoCoMo conversation is ingested through the real pipeline "
        f"(publish, promotion in batches of {result['batch_size']}, persona extraction after each drain), with the "
        "tests' fake OpenAI-compatible server answering (real HTTP, the real openai client). What is counted is "
        "how many calls our pipeline makes, which does not depend on the model; tokens are the fake server's "
        "estimate (4 characters per token). Baseline: MemoryOS's per-page scheme, 3 calls for every page that "
        "leaves short-term memory (continuity check, meta summary, topic summary), counted on the same promoted "
        "pages; it leaves out MemoryOS's persona calls, so it favours the baseline.",
        md_table(HEADERS, _table(result)),
        image_md("LLM calls per 100 turns", "llm_cost.png"),
        reproduce_md(result["reproduce"]),
    ])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conversations", "--conversation", dest="conversations", default="conv-26,conv-30",
                        help="LoCoMo conversations (files in ../shared/data/locomo), comma-separated")
    parser.add_argument("--batch-size", type=int, default=10)

"""LLM calls and tokens per 100 promoted turns on LoCoMo conversations, by purpose, with three fake models: the
regular one (answers as a competent model would), the persona one (its persona restates the pages,
memoryos_workers/testing/persona_responder.py) and the generic one (any schema-valid JSON, as a
schema-enforcing server with an arbitrary model writes it); beside MemoryOS's per-page scheme (3 calls per
promoted page: continuity check, meta summary, topic summary).

The LLM is the fake OpenAI-compatible server from the tests (real HTTP, the real openai client). What is
counted is how many calls our pipeline makes; with the generic model it shows that any schema-valid answer
is used as it is (no fallback, no retry). Workers run in-process, as the worker does: promotion after each
publish, then the heat refresh, then the persona extraction when the refresh asks for one; at the end the
persona work is flushed (as `wait_idle(flush=True)` does), so every call the promoted turns cost is counted
and divided by the turns promoted (not by the turns published, some of which are still in short-term memory
or in a partial batch, which is left waiting as at the end of a real conversation). Default settings
(batches of 10, short-term capacity 10, persona extraction coalesced to MEMORYOS_PERSONA_MIN_PAGES pages).
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
    load_result,
    md_table,
    pyplot,
    ratio,
    reproduce_md,
    save_figure,
)

LOCOMO = ROOT.parent / "shared" / "data" / "locomo"
MEMORYOS_CALLS_PER_PAGE = 3
CEILING = 12  # LLM calls per 100 turns at the defaults, retries included (issue 13)
PURPOSES = ("segmentation", "persona", "retry", "fallback")
MODES = ("regular", "persona", "generic")


def _fake(mode: str) -> Any:
    from memoryos_workers.testing.fake_llm import FakeLLM
    from memoryos_workers.testing.named_responders import responder_named

    llm = FakeLLM()
    if mode == "generic":
        llm.responder = None  # no competent answers: the schema alone decides
        llm.generic = True  # every json_schema answered with arbitrary valid JSON (random lengths and values)
    else:
        llm.responder = responder_named("default" if mode == "regular" else mode)
    return llm


def _conversation(conversation: str, batch_size: int, mode: str) -> dict[str, Any]:
    from memoryos_workers.counters import read_counters
    from memoryos_workers.ops.importers import locomo_turns
    from memoryos_workers.runtime import Runtime

    path = LOCOMO / f"{conversation}.json"
    with _fake(mode) as llm, tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(
            data_dir=Path(tmp), openai_base_url=llm.base_url, openai_api_key="bench", promotion_batch_size=batch_size
        )
        rt = Runtime(settings)
        user = "locomo-bench"
        try:
            turns = locomo_turns(path, user)
            promoter, persona = rt.promoter, rt.persona_worker
            for start in tqdm(range(0, len(turns), batch_size), desc=f"ingest {conversation} ({mode})",
                              unit="batch", leave=False):
                rt.publisher.publish_many(turns[start : start + batch_size])
                promoter.run(user)
                if persona.refresh_heat(user):  # what the heat-refresh task does after each drain
                    persona.extract(user)  # ... and the persona task it sends
            # The persona work left waiting, flushed (a partial last batch is not cut: at the end of a real
            # conversation it waits for more turns, and a call over a few pages would inflate the cost).
            persona.refresh_heat(user)
            for _ in range(50):
                if not persona.extract(user, force=True).get("calls", 0):
                    break
            stats = read_counters(rt.redis, rt.keys)
            promoted = rt.pages.count(user)
            waiting = rt.segment_stats.unanalysed(rt.keys.user(user), list(rt.segment_stats.lengths(
                rt.keys.user(user))))
        finally:
            rt.close()
            cleanup(rt.redis, settings.key_prefix)
    published = len(turns)
    n = max(promoted, 1)  # costs are per promoted turn
    calls = stats.get("llm_calls", 0)
    prompt, completion = stats.get("llm_prompt_tokens", 0), stats.get("llm_completion_tokens", 0)
    memoryos_calls = MEMORYOS_CALLS_PER_PAGE * promoted
    return {
        "conversation": conversation, "mode": mode, "turns": published, "promoted_pages": promoted,
        "llm_calls": calls, "per": "promoted turn, persona flushed", "calls_per_100_turns": 100 * calls / n,
        "tokens_per_100_turns": 100 * (prompt + completion) / n,
        "prompt_tokens_per_100_turns": 100 * prompt / n, "completion_tokens_per_100_turns": 100 * completion / n,
        "calls_per_100_by_purpose": {p: 100 * stats.get(f"llm_calls_{p}", 0) / n for p in PURPOSES},
        "tokens_per_100_by_purpose": {p: 100 * _tokens(stats, p) / n for p in PURPOSES},
        "memoryos_calls": memoryos_calls, "memoryos_calls_per_100_turns": 100 * memoryos_calls / n,
        "fallbacks": stats.get("segment_fallbacks", 0), "fallback_pages": stats.get("segment_fallback_pages", 0),
        "persona_extractions": stats.get("persona_extractions", 0),
        "batches_sharing_a_call": stats.get("segment_batches_shared", 0),
        "pages_waiting_for_persona": waiting,
    }


def run(conversations: str = "conv-26,conv-30", batch_size: int = 10, modes: str = ",".join(MODES)) -> dict[str, Any]:
    names = [c for c in conversations.split(",") if c]
    chosen = [m for m in modes.split(",") if m]
    unknown = set(chosen) - set(MODES)
    if unknown:
        raise SystemExit(f"--modes: unknown {', '.join(sorted(unknown))} (choose from {', '.join(MODES)})")
    rows = [_conversation(c, batch_size, m) for m in chosen for c in names]
    result: dict[str, Any] = {
        "batch_size": batch_size, "ceiling": CEILING, "conversations": rows,
        "reproduce": f"python -m bench llm_cost --conversations {','.join(names)} --batch-size {batch_size} "
                     f"--modes {','.join(chosen)}",
    }
    return finish("llm_cost", result, _print, _plot)


HEADERS = ("fake model", "conversation", "turns published / promoted", "MemoryOS calls / 100 promoted",
           "ours: calls / 100 promoted", "ours / MemoryOS", "segmentation", "persona", "retries", "on fallbacks",
           "tokens / 100 promoted", "fallback batches (pages)", "pages left unread")


def _table(result: dict[str, Any]) -> list[tuple[Any, ...]]:
    out = []
    for r in result["conversations"]:
        by = r.get("calls_per_100_by_purpose", {})
        ours, theirs = r["calls_per_100_turns"], r["memoryos_calls_per_100_turns"]
        out.append((r.get("mode", "regular"), r["conversation"], f"{r['turns']} / {r.get('promoted_pages', '?')}",
                    fmt(theirs, 1), fmt(ours, 1), ratio(ours, theirs), *(fmt(by.get(p, 0.0), 1) for p in PURPOSES),
                    fmt(r["tokens_per_100_turns"], 0), f"{r['fallbacks']} ({r.get('fallback_pages', 0)})",
                    r.get("pages_waiting_for_persona", "?")))
    return out


def real_model_row(real: dict[str, Any] | None) -> tuple[Any, ...] | None:
    """The real small model's run (bench/real_llm_check.py, section 12) as a row of the same table: the same
    per-promoted-turn division with the persona flushed, so it reads beside the fake models'."""
    if not real or not real.get("promoted_pages"):
        return None
    promoted, by = real["promoted_pages"], real.get("calls_by_purpose", {})
    per = {p: 100 * by.get(p, 0) / promoted for p in PURPOSES}
    ours = 100 * sum(by.get(p, 0) for p in PURPOSES) / promoted
    theirs = float(MEMORYOS_CALLS_PER_PAGE * 100)
    tokens = 100 * sum(real.get("tokens_by_purpose", {}).values()) / promoted
    meta = real.get("meta", {})
    name = f"real 0.5B (section 12, {str(meta.get('measured_at', '?'))[:10]} at {meta.get('commit', '?')})"
    return (name, f"{real.get('conversation', '?')}, first {real.get('turns', '?')}",
            f"{real.get('turns', '?')} / {promoted}", fmt(theirs, 1), fmt(ours, 1), ratio(ours, theirs),
            *(fmt(per[p], 1) for p in PURPOSES), fmt(tokens, 0), _fallbacks(real), 0)


def _fallbacks(real: dict[str, Any]) -> str:
    """The run keeps whether any segmentation fell back (its check), not how many: "0 (0)" or "some"."""
    passed = real.get("checks", {}).get("0 segmentation fallbacks")
    return "0 (0)" if passed is True else "some" if passed is False else "?"


def _print(result: dict[str, Any]) -> None:
    print(f"\nLLM cost of ingestion, batch size {result['batch_size']}: calls per 100 promoted turns by purpose, "
          "persona work flushed (fake LLMs)")
    widths = (8, 13, 10, 12, 9, 7, 6, 8, 8, 9, 11, 10, 6)
    short = ("model", "conversation", "pub/prom", "MemoryOS/100", "ours/100", "ratio", "segm.", "persona",
             "retries", "fallback", "tokens/100", "fb (pages)", "unread")
    print(" ".join(h.rjust(w) for h, w in zip(short, widths, strict=True)))
    for row in _table(result):
        print(" ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)))
    for r in result["conversations"]:
        tokens = r.get("tokens_per_100_by_purpose", {})
        print(f"  {r.get('mode', 'regular'):8} {r['conversation']}: tokens/100 by purpose "
              + ", ".join(f"{p} {tokens.get(p, 0):.0f}" for p in PURPOSES)
              + f"; {r.get('persona_extractions', 0)} persona extractions, "
                f"{r.get('pages_waiting_for_persona', 0)} pages left for the next (or the quiet-user delay)")
    worst = max(r["calls_per_100_turns"] for r in result["conversations"])
    print(f"ceiling: at most {result['ceiling']} calls per 100 turns, retries included -> worst here {worst:.1f} "
          f"({'within' if worst <= result['ceiling'] else 'OVER'})")
    print("MemoryOS per-page scheme: 3 calls per promoted page; tokens: the fake LLM's count (~4 chars/token)")


def _plot(result: dict[str, Any]) -> Path:
    plt = pyplot()
    rows = result["conversations"]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    x = range(len(rows))
    bottom = [0.0] * len(rows)
    colours = {"segmentation": "tab:blue", "persona": "tab:green", "retry": "tab:orange", "fallback": "tab:red"}
    for purpose in PURPOSES:
        values = [r.get("calls_per_100_by_purpose", {}).get(purpose, 0.0) for r in rows]
        ax.bar(list(x), values, 0.6, bottom=bottom, label=purpose, color=colours[purpose])
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    for i, total in enumerate(bottom):
        ax.text(i, total + 0.2, f"{total:.1f}", ha="center", fontsize=8)
    ax.axhline(result.get("ceiling", CEILING), color="black", linestyle="--", linewidth=1,
               label=f"ceiling ({result.get('ceiling', CEILING)})")
    ax.set_xticks(list(x), [f"{r['conversation']}\n{r.get('mode', 'regular')}" for r in rows])
    ax.set_ylabel("LLM calls per 100 ingested turns")
    ax.set_title(f"LLM calls of ingestion by purpose (batch size {result['batch_size']}; MemoryOS per-page: ~280)")
    ax.set_ylim(0, 1.4 * max(max(bottom), result.get("ceiling", CEILING)))
    ax.legend(fontsize=8, loc="upper center", ncol=5)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, "llm_cost.png")


def markdown(result: dict[str, Any]) -> str:
    return "\n\n".join([
        "## 5. LLM cost of ingestion",
        "LLM calls and tokens per 100 promoted turns when a LoCoMo conversation is ingested through the real "
        f"pipeline at the default settings (publish, promotion in batches of {result['batch_size']}, the heat "
        "refresh after each drain and the persona extraction when it asks for one; at the end the persona work "
        "flushed, so the calls counted are all the promoted turns cost; turns still in short-term memory or in a "
        "partial batch are not promoted and not counted), with the tests' fake "
        "OpenAI-compatible server answering (real HTTP, the real openai client) in three ways: `regular` answers as "
        "a competent model would; `persona` too, with a persona that restates the pages; "
        "`generic` answers every call with arbitrary JSON valid for the call's schema, as a schema-enforcing server "
        "(OpenAI strict mode, llama.cpp grammars, vLLM, Ollama) does whatever its model. Calls are split by "
        "purpose: segmentation, persona, retries (any further call for the same work) and calls spent on work that "
        f"ended in the fallback. Ceiling: {result.get('ceiling', CEILING)} calls per 100 turns, retries included. "
        "Tokens are the fake server's estimate (4 characters per token). Baseline: MemoryOS's per-page scheme, 3 "
        "calls for every page that leaves short-term memory, counted on the same promoted pages; it leaves out "
        "MemoryOS's persona calls, so it favours the baseline. The last row is the real small model of section 12 "
        "(its own run and date; tokens counted by its server), divided the same way.",
        md_table(HEADERS, [*_table(result), *filter(None, [real_model_row(load_result("real_llm_check"))])]),
        image_md("LLM calls per 100 turns by purpose", "llm_cost.png"),
        reproduce_md(result["reproduce"]),
    ])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conversations", "--conversation", dest="conversations", default="conv-26,conv-30",
                        help="LoCoMo conversations (files in ../shared/data/locomo), comma-separated")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--modes", default=",".join(MODES),
                        help="fake models: regular (competent answers), generic (any schema-valid JSON)")


def _tokens(stats: dict[str, int], purpose: str) -> int:
    return stats.get(f"llm_prompt_tokens_{purpose}", 0) + stats.get(f"llm_completion_tokens_{purpose}", 0)

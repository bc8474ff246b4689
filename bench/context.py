"""Context: the share of LoCoMo evidence inside the prompt a retrieval builds, at 500 to 4,000 tokens,
against plain dense pages packed into the same budget in the same run.

Each conversation is ingested through the real pipeline (publish, promotion with the tests' fake LLM) as
its own user of one store, short-term capacity --stm, then flushed (as bench/retrieval.py does). For each
question of categories 1-4 and each budget B: *ours* is `retrieve(user, question, now=..., max_tokens=B)`,
whose context holds exactly what its prompt holds; a question's share is the part of its evidence turns
(`dia_id`s) among the turns of that context. *Plain dense* ranks all pages of the conversation by cosine
with the question (same model) and packs their lines (the prompt's own page rendering, no headers) in that
order while they fit B, skipping any that does not. Both count tokens with schemas.tokens (the LLM
layer's estimate). `now` is an hour after the conversation's last session (when the questions are asked).

Tuning discipline: the packing and fusion parameters were chosen on conv-26 only; conv-30 is held out
and reported separately. Variants (--variants) are measured on both and reported separately, so a
change that only helps the conversation it was tuned on shows as such.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .common import bench_settings, cleanup, finish, fmt, image_md, md_table, percentile, pyplot, reproduce_md
from .retrieval import CATEGORIES, HELD_OUT, LOCOMO, TUNED, _evidence, _ingest, question_time

OURS = "memoryos-workers"
DENSE = "plain dense, packed"
UNBUDGETED = "before: top-10, no budget"
DEFAULT_BUDGETS = "500,1000,2000,4000"
# Each a change to the retriever (fusion or packing parameters) measured beside the default.
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "without segment neighbours (multi-hop)": {"fusion": {"neighbour_weight": 0.0}},
    "value per token (length_exponent 1)": {"packing": {"length_exponent": 1.0}},
    "derived reserve 0.15": {"packing": {"derived_share": 0.15}},
    "no derived reserve": {"packing": {"derived_share": 0.0}},
}


def _pages(turns: list[dict], user: str) -> list[Any]:
    from schemas.turns import Page

    return [Page(seq=i, user_id=user, turn_id=t["turn_id"], user_input=t["user_input"],
                 agent_response=t["agent_response"], timestamp=t["timestamp"]) for i, t in enumerate(turns)]


def _dense_packed(order: list[int], lines: list[str], costs: list[int], budget: int) -> list[int]:
    kept, spent = [], 0
    for i in order:
        if spent + costs[i] <= budget:
            kept.append(i)
            spent += costs[i]
    return kept


def _share(turn_ids: Any, dia: dict[str, list[str]], evidence: set[str]) -> float:
    found = {d for t in turn_ids for d in dia.get(t, [])}
    return len(found & evidence) / len(evidence)


def _conversation(rt: Any, retrievers: dict[str, Any], conv: str, turns: list[dict], dia: dict[str, list[str]],
                  budgets: list[int]) -> dict[str, Any]:
    import numpy as np

    from producers.context.render import dialogue_line
    from schemas.tokens import estimate_tokens

    user = f"locomo-{conv}"
    data = json.loads((LOCOMO / f"{conv}.json").read_text(encoding="utf-8"))
    questions = [q for q in data["qa"] if str(q.get("category")) in CATEGORIES and _evidence(q)]
    pages = _pages(turns, user)
    lines = [dialogue_line(p) + "\n" for p in pages]
    costs = [estimate_tokens(line) for line in lines]
    matrix = np.asarray(rt.embedder.embed([p.text() for p in pages]), dtype=np.float32)
    now = question_time(turns)
    # method -> budget -> category -> shares; method -> budget -> prompt tokens
    shares: dict[str, dict[int, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    tokens: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    latency: list[float] = []
    for qa in tqdm(questions, desc=f"questions {conv}", unit="q", leave=False):
        evidence, cat, q = _evidence(qa), str(qa["category"]), str(qa["question"])
        qv = np.asarray(rt.embedder.embed_query(q), dtype=np.float32)
        order = [int(i) for i in np.argsort(-(matrix @ qv))]
        before = retrievers[OURS].retrieve_for(user, q, now=now, top_k=10, max_tokens=0)
        for budget in budgets:
            kept = _dense_packed(order, lines, costs, budget)
            shares[DENSE][budget][cat].append(_share((pages[i].turn_id for i in kept), dia, evidence))
            tokens[DENSE][budget].append(sum(costs[i] for i in kept))
            shares[UNBUDGETED][budget][cat].append(_share(before.turn_ids(), dia, evidence))
            tokens[UNBUDGETED][budget].append(before.prompt_tokens())
            for name, retriever in retrievers.items():
                t0 = time.perf_counter()
                ctx = retriever.retrieve_for(user, q, now=now, max_tokens=budget)
                if name == OURS:
                    latency.append(time.perf_counter() - t0)
                used = ctx.prompt_tokens()
                assert used <= budget, f"{name}: prompt of {used} tokens over the budget of {budget}"
                shares[name][budget][cat].append(_share(ctx.turn_ids(), dia, evidence))
                tokens[name][budget].append(used)
    return {
        "conversation": conv, "role": "tuned" if conv == TUNED else "held out", "questions": len(questions),
        "turns": len(turns), "now": now.isoformat(),
        "share": {m: {str(b): _mean([v for vs in by_cat.values() for v in vs]) for b, by_cat in by_b.items()}
                  for m, by_b in shares.items()},
        "share_by_category": {m: {str(b): {c: _mean(v) for c, v in sorted(by_cat.items())}
                                  for b, by_cat in by_b.items()} for m, by_b in shares.items()},
        "category_questions": {c: len(v) for c, v in sorted(shares[DENSE][budgets[0]].items())},
        "tokens_p50": {m: {str(b): percentile(v, 50) for b, v in by_b.items()} for m, by_b in tokens.items()},
        "tokens_p90": {m: {str(b): percentile(v, 90) for b, v in by_b.items()} for m, by_b in tokens.items()},
        "retrieve_p50_ms": percentile(latency, 50) * 1000,
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def measure(conversations: list[str], budgets: list[int], stm: int, variants: bool) -> list[dict[str, Any]]:
    from memoryos_workers.runtime import Runtime
    from memoryos_workers.testing.fake_llm import FakeLLM
    from memoryos_workers.testing.responders import default_responder

    with FakeLLM() as llm, tempfile.TemporaryDirectory(prefix="memoryos-bench-") as tmp:
        llm.responder = default_responder
        settings = bench_settings(data_dir=Path(tmp), openai_base_url=llm.base_url, openai_api_key="bench",
                                  short_term_capacity=stm)
        rt = Runtime(settings)
        try:
            ingested = {c: _ingest(rt, LOCOMO / f"{c}.json", f"locomo-{c}") for c in conversations}
            retrievers = {OURS: rt.retriever}
            if variants:
                for name, change in VARIANTS.items():
                    retrievers[name] = rt.retriever.with_fusion(**change.get("fusion", {})).with_packing(
                        **change.get("packing", {}))
            return [_conversation(rt, retrievers, conv, turns, dia, budgets)
                    for conv, (turns, dia) in ingested.items()]
        finally:
            rt.close()
            cleanup(rt.redis, settings.key_prefix)


# --- output ---------------------------------------------------------------------------------------------


def _print(result: dict[str, Any]) -> None:
    budgets = result["budgets"]
    for r in result["conversations"]:
        print(f"\n{r['conversation']} ({r['role']}, {r['questions']} questions, {r['turns']} turns): evidence "
              f"share inside the prompt")
        print(f"{'':34}" + "".join(f" {b:>7}" for b in budgets))
        for name, by_b in r["share"].items():
            print(f"{name:34}" + "".join(f" {by_b[b]:7.3f}" for b in budgets))
        ours, dense = r["share"][OURS]["2000"], r["share"][DENSE]["2000"]
        print(f"  at 2,000 tokens: {ours:.3f} vs plain dense {dense:.3f} (+{ours - dense:.3f}; floor +0.05); "
              f"retrieve p50 {r['retrieve_p50_ms']:.1f} ms")


def _plot(result: dict[str, Any]) -> Path:
    plt = pyplot()
    budgets = [int(b) for b in result["budgets"]]
    convs = result["conversations"]
    fig, axes = plt.subplots(1, len(convs), figsize=(5.5 * len(convs), 4.2), sharey=True, squeeze=False)
    for ax, r in zip(axes[0], convs, strict=True):
        for name, style in ((OURS, "o-"), (DENSE, "s--")):
            ax.plot(budgets, [r["share"][name][str(b)] for b in budgets], style, label=name)
        for name in r["share"]:
            if name not in (OURS, DENSE, UNBUDGETED):
                ax.plot(budgets, [r["share"][name][str(b)] for b in budgets], ":", lw=1, label=name)
        before = r["share"][UNBUDGETED][str(budgets[0])]
        ax.scatter([r["tokens_p50"][UNBUDGETED][str(budgets[0])]], [before], marker="x", color="k",
                   label=f"{UNBUDGETED} (p50 tokens)")
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(budgets, [f"{b:,}" for b in budgets])
        ax.set_xlabel("prompt budget (tokens, characters / 4)")
        ax.set_title(f"{r['conversation']} ({r['role']}, {r['questions']} q)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("share of evidence turns inside the prompt")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("LoCoMo evidence inside the memory context, by token budget")
    return _save(fig)


def _save(fig: Any) -> Path:
    from .common import save_figure

    return save_figure(fig, "context_budget.png")


def markdown(result: dict[str, Any]) -> str:
    budgets = result["budgets"]
    parts = [
        "## 10. Memory context within a token budget",
        "How much of the evidence a question needs is inside the prompt `retrieve(..., max_tokens=B)` builds, "
        "against plain dense pages packed into the same B tokens in the same run (see bench/context.py). "
        f"Parameters were tuned on {TUNED} only; {HELD_OUT} is held out and reported on its own. Tokens are "
        "the context budget's fixed estimate (characters / 4, schemas/tokens.py); every prompt was checked to "
        "fit its budget.",
    ]
    for r in result["conversations"]:
        rows = []
        for name, by_b in r["share"].items():
            label = f"**{name}**" if name == OURS else name
            rows.append((label, *(fmt(by_b[b], 3) for b in budgets),
                         *(fmt(r["tokens_p50"][name][b], 0) for b in budgets[2:3])))
        cats = [(f"{c} {CATEGORIES[c]}", n, *(f"{fmt(r['share_by_category'][OURS][b][c], 2)} / "
                                               f"{fmt(r['share_by_category'][DENSE][b][c], 2)}" for b in budgets))
                for c, n in r["category_questions"].items()]
        ours, dense = r["share"][OURS]["2000"], r["share"][DENSE]["2000"]
        parts += [
            f"**{r['conversation']}** ({r['role']}; {r['questions']} questions, {r['turns']} turns; questions asked "
            f"at {r['now'][:16]}): at 2,000 tokens {fmt(ours, 3)} against plain dense {fmt(dense, 3)} "
            f"({ours - dense:+.3f}); in-process retrieve p50 {fmt(r['retrieve_p50_ms'])} ms.",
            md_table(("evidence share", *(f"{int(b):,} tokens" for b in budgets), "p50 tokens at 2,000"), rows),
            "By category (ours / plain dense):",
            md_table(("category", "questions", *(f"{int(b):,}" for b in budgets)), cats),
        ]
    parts += [
        f"*{UNBUDGETED}* is `retrieve(top_k=10, max_tokens=0)`: the paper's 10 pages with every summary, fact "
        "and trait kept (rendered as now, a topic's summary once), the same at every budget column; its p50 "
        "size is in the last column. Variant rows change one parameter of ours on both conversations; a "
        f"parameter is chosen on {TUNED} and a feature kept only where {HELD_OUT} measures better with it.",
        _neighbours_note(result),
        image_md("evidence share against token budget", "context_budget.png"),
        reproduce_md(result["reproduce"]),
    ]
    return "\n\n".join(parts)


def _neighbours_note(result: dict[str, Any]) -> str:
    """The multi-hop decision, from the figures of this run."""
    off = "without segment neighbours (multi-hop)"
    held = [r for r in result["conversations"] if r["conversation"] == HELD_OUT and off in r["share"]]
    if not held:
        return f"Segment neighbours were not measured against {HELD_OUT} in this run (`--variants`)."
    r, budgets = held[0], result["budgets"]
    pairs = ", ".join(f"{fmt(r['share'][OURS][b], 3)} / {fmt(r['share'][off][b], 3)}" for b in budgets)
    multi = ", ".join(f"{fmt(r['share_by_category'][OURS][b].get('1'), 2)} / "
                      f"{fmt(r['share_by_category'][off][b].get('1'), 2)}" for b in budgets)
    n = r["category_questions"].get("1", 0)
    return (f"Multi-hop (segment neighbours of the strongest hits, `FusionParams.neighbour_weight`): on held-out "
            f"{HELD_OUT} the evidence share with / without them is {pairs} at {', '.join(budgets)} tokens; for "
            f"its {n} multi-hop questions alone {multi}.")


def run(conversations: str = f"{TUNED},{HELD_OUT}", budgets: str = DEFAULT_BUDGETS, stm: int = 1,
        variants: bool = False) -> dict[str, Any]:
    budget_list = sorted({int(b) for b in budgets.split(",") if b} | {2000})
    convs = [c for c in conversations.split(",") if c]
    rows = measure(convs, budget_list, stm, variants)
    result = json.loads(json.dumps({
        "budgets": [str(b) for b in budget_list], "stm": stm, "conversations": rows,
        "reproduce": f"python -m bench context --conversations {conversations} --budgets "
                     f"{','.join(map(str, budget_list))} --stm {stm}" + (" --variants" if variants else ""),
    }, default=str))
    return finish("context", result, _print, _plot)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conversations", default=f"{TUNED},{HELD_OUT}",
                        help=f"LoCoMo conversations ({TUNED} is the one tuned on, {HELD_OUT} is held out)")
    parser.add_argument("--budgets", default=DEFAULT_BUDGETS, help="prompt budgets in tokens (2000 always)")
    parser.add_argument("--stm", type=int, default=1, help="short-term capacity while ingesting")
    parser.add_argument("--variants", action="store_true", help="also measure the parameter variants")


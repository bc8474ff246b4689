"""Context: the share of LoCoMo evidence inside the prompt a retrieval builds, and whether the short gold
answer is in it, at 500 to 4,000 tokens, against plain dense pages and a stock hybrid packed into the same
budget in the same run.

Each conversation is ingested through the real pipeline (publish, promotion, then the persona work flushed)
with a test model whose persona derives from the pages (memoryos_workers/testing/persona_responder.py:
third-person facts and a summary of what the user said; `--responder default` for the older one), as its
own user of one store, at the default short-term capacity (--stm, 10). For each question of categories 1-4 and
each budget B: *ours* is `retrieve(user, question, now=..., max_tokens=B)`, whose context holds exactly what
its prompt holds; *before* is the same retriever with no persona share (the packer of main at 6e356a8, where
the persona competes with pages). A question's evidence share is the part of its evidence turns (`dia_id`s)
among the turns of that context. *Plain dense* ranks all pages of the conversation by cosine with the question
(same model) and packs their lines (the prompt's own page line, each with its time as a stock packer writes
it, no headers) in that order while they fit B; *stock hybrid* does the same with BM25 and cosine fused by
rank (k=60, bench/baselines.py). *Answer in prompt* (bench/baselines.py): for each question whose gold answer
is short, whether the answer, normalised as LoCoMo's evaluation normalises it, is in the normalised prompt;
this counts what summaries, the profile and facts say, which the evidence share cannot. Tokens are
schemas.tokens' estimate. `now` is an hour after the conversation's last session. Two runs of the same code
build the same prompts (checked with `--budgets 2000 --dump` twice at 48e9336: all 231 identical; before it,
BM25 pages tied in score were cut in the store's internal order, and 5 to 11 prompts differed between runs).

Tuning discipline: both conversations are in-sample. Packing parameters (the persona share among them) are
chosen on conv-26 and checked on conv-30; so was BM25 with the user's own IDF (FusionParams.user_idf and its
candidate depth; the variant "collection IDF" is the BM25 before it); the fusion weights were chosen on both,
and segment neighbours were kept because conv-30 measured better with them, so conv-30 is not held out.
Variants (--variants) are measured on both and reported separately.
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

from .baselines import answer_in, bm25_order, normalize_answer, rrf, short_answer
from .common import bench_settings, cleanup, finish, fmt, image_md, md_table, percentile, pyplot, reproduce_md
from .reader import READER_BUDGET, Reader, bleu1, f1, print_reader, reader_md
from .retrieval import (
    CATEGORIES,
    CHECKED,  # in-sample too: the conversation the packing is checked on
    LOCOMO,
    TUNED,
    _evidence,
    _ingest,
    question_time,
)

OURS = "memoryos-workers"
BEFORE = "before: no persona share"
DENSE = "plain dense, packed"
HYBRID = "stock hybrid (BM25 + dense, RRF k=60), packed"
UNBUDGETED = "before: top-10, no budget"

ROLES = {TUNED: "in-sample: packing and per-user IDF chosen on it",
         CHECKED: "in-sample: packing and per-user IDF checked on it"}
DEFAULT_BUDGETS = "500,1000,2000,4000"
# Each a change to the retriever (fusion or packing parameters) measured beside the default.
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "without segment neighbours (multi-hop)": {"fusion": {"neighbour_weight": 0.0}},
    "value per token (length_exponent 1)": {"packing": {"length_exponent": 1.0}},
    "derived reserve 0.15": {"packing": {"derived_share": 0.15}},
    "no derived reserve": {"packing": {"derived_share": 0.0}},
    "persona share 0.15": {"packing": {"persona_share": 0.15}},
    "collection IDF (BM25 before per-user IDF)": {"fusion": {"user_idf": False}},
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
                  budgets: list[int], reader: Any = None, reader_questions: int = 0,
                  dump: bool = False) -> dict[str, Any]:
    import numpy as np

    from producers.context.render import dialogue_line
    from schemas.tokens import estimate_tokens

    user = f"locomo-{conv}"
    data = json.loads((LOCOMO / f"{conv}.json").read_text(encoding="utf-8"))
    questions = [q for q in data["qa"] if str(q.get("category")) in CATEGORIES and _evidence(q)]
    pages = _pages(turns, user)
    lines = [dialogue_line(p) + "\n" for p in pages]
    costs = [estimate_tokens(line) for line in lines]
    texts = [p.text() for p in pages]
    matrix = np.asarray(rt.embedder.embed(texts), dtype=np.float32)
    now = question_time(turns)
    # method -> budget -> category -> shares; method -> budget -> prompt tokens; method -> budget -> answer hits
    shares: dict[str, dict[int, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    tokens: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    answers: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    persona: dict[str, dict[int, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    latency: list[float] = []
    short = [i for i, qa in enumerate(questions) if short_answer(qa.get("answer")) is not None]
    step = max(1, len(short) // max(reader_questions, 1))
    to_read = set(short[::step][:reader_questions]) if reader is not None else set()
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    readings: list[dict[str, Any]] = []
    prompts: dict[str, str] = {}
    per_question: list[dict[str, Any]] = []  # --dump: what each prompt of the reader's budget held

    def record(name: str, budget: int, cat: str, turn_ids: Any, prompt: str, used: int, gold: str | None,
               evidence: set[str]) -> None:
        if budget == READER_BUDGET:
            prompts[name] = prompt
            if dump and name in (OURS, DENSE, HYBRID):
                found = sorted({d for t in turn_ids for d in dia.get(t, [])} & evidence)
                per_question[-1][name] = {"evidence_found": found, "prompt": prompt, "tokens": used,
                                          "answer_in_prompt": None if gold is None
                                          else answer_in(gold, normalize_answer(prompt))}
        shares[name][budget][cat].append(_share(turn_ids, dia, evidence))
        tokens[name][budget].append(used)
        if gold is not None:
            answers[name][budget].append(float(answer_in(gold, normalize_answer(prompt))))

    for number, qa in enumerate(tqdm(questions, desc=f"questions {conv}", unit="q", leave=False)):
        evidence, cat, q = _evidence(qa), str(qa["category"]), str(qa["question"])
        gold = short_answer(qa.get("answer"))
        if dump:
            per_question.append({"question": q, "category": cat, "answer": str(qa.get("answer")), "short": gold,
                                 "evidence": sorted(evidence)})
        qv = np.asarray(rt.embedder.embed_query(q), dtype=np.float32)
        dense = [int(i) for i in np.argsort(-(matrix @ qv))]
        orders = {DENSE: dense, HYBRID: rrf([dense, bm25_order(texts, q)])}
        before = retrievers[OURS].retrieve_for(user, q, now=now, top_k=10, max_tokens=0)
        for budget in budgets:
            for name, order in orders.items():
                kept = _dense_packed(order, lines, costs, budget)
                record(name, budget, cat, [pages[i].turn_id for i in kept], "".join(lines[i] for i in kept),
                       sum(costs[i] for i in kept), gold, evidence)
            record(UNBUDGETED, budget, cat, before.turn_ids(), before.to_prompt(), before.prompt_tokens(), gold,
                   evidence)
            for name, retriever in retrievers.items():
                t0 = time.perf_counter()
                ctx = retriever.retrieve_for(user, q, now=now, max_tokens=budget)
                if name == OURS:
                    latency.append(time.perf_counter() - t0)
                used = ctx.prompt_tokens()
                assert used <= budget, f"{name}: prompt of {used} tokens over the budget of {budget}"
                record(name, budget, cat, ctx.turn_ids(), ctx.to_prompt(), used, gold, evidence)
                profile = ctx.user_profile
                persona[name][budget]["profile"].append(float(bool(profile is not None and profile.summary)))
                persona[name][budget]["facts"].append(float(len(ctx.user_knowledge)))
        if number in to_read:
            reading = {"question": q, "gold": str(qa.get("answer"))}
            for name in (OURS, DENSE, HYBRID):
                said = reader.answer(prompts[name], q)
                scores[name]["f1"].append(f1(said, reading["gold"]))
                scores[name]["bleu1"].append(bleu1(said, reading["gold"]))
                reading[name] = said
            readings.append(reading)
    return {
        **({"per_question": per_question} if dump else {}),
        "reader": {m: {k: _mean(v) for k, v in by.items()} for m, by in scores.items()},
        "reader_questions": len(readings), "readings": readings[:20],
        "conversation": conv, "role": ROLES.get(conv, "not used for choosing"), "questions": len(questions),
        "turns": len(turns), "now": now.isoformat(),
        "answer_questions": len(answers[DENSE][budgets[0]]),
        "share": {m: {str(b): _mean([v for vs in by_cat.values() for v in vs]) for b, by_cat in by_b.items()}
                  for m, by_b in shares.items()},
        "answer_in_prompt": {m: {str(b): _mean(v) for b, v in by_b.items()} for m, by_b in answers.items()},
        "profile_in_prompt": {m: {str(b): _mean(v["profile"]) for b, v in by_b.items()} for m, by_b in persona.items()},
        "facts_per_prompt": {m: {str(b): _mean(v["facts"]) for b, v in by_b.items()} for m, by_b in persona.items()},
        "share_by_category": {m: {str(b): {c: _mean(v) for c, v in sorted(by_cat.items())}
                                  for b, by_cat in by_b.items()} for m, by_b in shares.items()},
        "category_questions": {c: len(v) for c, v in sorted(shares[DENSE][budgets[0]].items())},
        "tokens_p50": {m: {str(b): percentile(v, 50) for b, v in by_b.items()} for m, by_b in tokens.items()},
        "tokens_p90": {m: {str(b): percentile(v, 90) for b, v in by_b.items()} for m, by_b in tokens.items()},
        "retrieve_p50_ms": percentile(latency, 50) * 1000,
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def measure(conversations: list[str], budgets: list[int], stm: int, variants: bool,
            responder: str = "persona", reader_url: str = "", reader_questions: int = 20,
            dump: bool = False) -> list[dict[str, Any]]:
    from memoryos_workers.runtime import Runtime
    from memoryos_workers.testing.fake_llm import FakeLLM
    from memoryos_workers.testing.named_responders import responder_named

    with FakeLLM() as llm, tempfile.TemporaryDirectory(prefix="memoryos-bench-") as tmp:
        llm.responder = responder_named(responder)
        settings = bench_settings(data_dir=Path(tmp), openai_base_url=llm.base_url, openai_api_key="bench",
                                  short_term_capacity=stm)
        rt = Runtime(settings)
        try:
            ingested = {c: _ingest(rt, LOCOMO / f"{c}.json", f"locomo-{c}") for c in conversations}
            for conv in conversations:
                flush_persona(rt, f"locomo-{conv}")
            retrievers = {OURS: rt.retriever, BEFORE: rt.retriever.with_packing(persona_share=0.0)}
            if variants:
                for name, change in VARIANTS.items():
                    retrievers[name] = rt.retriever.with_fusion(**change.get("fusion", {})).with_packing(
                        **change.get("packing", {}))
            reader = Reader(reader_url) if reader_url else None
            return [_conversation(rt, retrievers, conv, turns, dia, budgets, reader, reader_questions, dump)
                    for conv, (turns, dia) in ingested.items()]
        finally:
            rt.close()
            cleanup(rt.redis, settings.key_prefix)


def flush_persona(rt: Any, user: str, rounds: int = 50) -> int:
    """Runs the persona work ingestion left waiting (as `wait_idle(flush=True)` does in production) until
    no page of a hot segment is left unread; returns the calls it made."""
    calls = 0
    for _ in range(rounds):
        made = rt.persona_worker.extract(user, force=True).get("calls", 0)
        calls += made
        if not made:
            break
    return calls


# --- output ---------------------------------------------------------------------------------------------


def _print(result: dict[str, Any]) -> None:
    budgets = result["budgets"]
    for r in result["conversations"]:
        print(f"\n{r['conversation']} ({r['role']}, {r['questions']} questions, {r['answer_questions']} with a short "
              f"answer, {r['turns']} turns): evidence share / answer in prompt")
        print(f"{'':48}" + "".join(f" {b:>13}" for b in budgets))
        for name, by_b in r["share"].items():
            ans = r["answer_in_prompt"].get(name, {})
            print(f"{name[:48]:48}" + "".join(f" {by_b[b]:6.3f}/{ans.get(b, float('nan')):6.3f}" for b in budgets))
        for name in r["profile_in_prompt"]:
            print(f"{name[:40]:40} profile in prompt " + " ".join(
                f"{r['profile_in_prompt'][name][b]:.3f}" for b in budgets) + "; user facts per prompt " + " ".join(
                f"{r['facts_per_prompt'][name][b]:.2f}" for b in budgets))
        print(f"  retrieve p50 {r['retrieve_p50_ms']:.1f} ms")


def _plot(result: dict[str, Any]) -> Path:
    plt = pyplot()
    budgets = [int(b) for b in result["budgets"]]
    convs = result["conversations"]
    fig, axes = plt.subplots(1, len(convs), figsize=(5.5 * len(convs), 4.2), sharey=True, squeeze=False)
    for ax, r in zip(axes[0], convs, strict=True):
        for name, style in ((OURS, "o-"), (BEFORE, "o:"), (DENSE, "s--"), (HYBRID, "^-.")):
            ax.plot(budgets, [r["share"][name][str(b)] for b in budgets], style, label=name)
        for name in r["share"]:
            if name not in (OURS, BEFORE, DENSE, HYBRID, UNBUDGETED):
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
        "How much of the evidence a question needs is inside the prompt `retrieve(..., max_tokens=B)` builds, and "
        "whether its short gold answer is (normalised as LoCoMo's evaluation normalises answers), against plain "
        "dense pages and a stock hybrid (BM25 + dense fused by rank, k=60) packed into the same B tokens in the "
        "same run, and against the same retriever without the persona share (see bench/context.py). "
        f"Ingestion at the default short-term capacity ({result.get('stm', 10)}), the persona work flushed, with "
        f"the `{result.get('responder', 'default')}` test model (its persona restates what the user said). "
        f"**Both conversations are in-sample**: the persona share and the packing were chosen on {TUNED} and "
        f"checked on {CHECKED}, and so was BM25 weighing words by the user's own pages (per-user IDF; the "
        f"*collection IDF* row is the BM25 before it, weighing them by every user's pages in the store); the "
        f"fusion weights were chosen on both, and segment neighbours were kept "
        f"because {CHECKED} measured better with them. Tokens are the budget's estimate (characters / 4, "
        "schemas/tokens.py); every prompt was checked to fit its budget.",
    ]
    for r in result["conversations"]:
        rows = []
        for name, by_b in r["share"].items():
            label = f"**{name}**" if name == OURS else name
            ans = r.get("answer_in_prompt", {}).get(name, {})
            rows.append((label, *(f"{fmt(by_b[b], 3)} / {fmt(ans.get(b), 3)}" for b in budgets),
                         *(fmt(r["tokens_p50"][name][b], 0) for b in budgets if b == "2000")))
        persona = [(name, *(f"{fmt(r['profile_in_prompt'][name][b], 2)} / {fmt(r['facts_per_prompt'][name][b], 2)}"
                            for b in budgets)) for name in r.get("profile_in_prompt", {})]
        cats = [(f"{c} {CATEGORIES[c]}", n, *(f"{fmt(r['share_by_category'][OURS][b][c], 2)} / "
                                               f"{fmt(r['share_by_category'][DENSE][b][c], 2)}" for b in budgets))
                for c, n in r["category_questions"].items()]
        ours, dense = r["share"][OURS]["2000"], r["share"][DENSE]["2000"]
        parts += [
            f"**{r['conversation']}** ({r['role']}; {r['questions']} questions, {r.get('answer_questions', 0)} with "
            f"a short answer; {r['turns']} turns; questions asked at {r['now'][:16]}): at 2,000 tokens evidence "
            f"{fmt(ours, 3)} against plain dense {fmt(dense, 3)} ({ours - dense:+.3f}); in-process retrieve p50 "
            f"{fmt(r['retrieve_p50_ms'])} ms.",
            md_table(("evidence share / answer in prompt", *(f"{int(b):,} tokens" for b in budgets),
                      "p50 tokens at 2,000"), rows),
            "Persona in the prompt (share of prompts with the profile summary / user facts per prompt):",
            md_table(("", *(f"{int(b):,}" for b in budgets)), persona),
            "Evidence by category (ours / plain dense):",
            md_table(("category", "questions", *(f"{int(b):,}" for b in budgets)), cats),
        ]
    parts += [
        f"*{UNBUDGETED}* is `retrieve(top_k=10, max_tokens=0)`: the paper's 10 pages with every summary, fact "
        f"and trait kept, the same at every budget column. *{BEFORE}* is ours with `persona_share=0` (the packer "
        "before the persona share, where the profile and facts compete with pages). Variant rows change one "
        "parameter of ours on both conversations. Ours lists the pages of one session together and says their time "
        "once (render.py); the baselines keep one line per page, each with its time, as a stock packer writes it. "
        "Answer in prompt counts only answers of at most 5 words; "
        "dates are rendered as `2023-05-08` in prompts, so an answer written as \"8 May 2023\" is never found "
        "by any method.",
        _neighbours_note(result),
        *reader_md(),
        image_md("evidence share against token budget", "context_budget.png"),
        reproduce_md(result["reproduce"]),
    ]
    return "\n\n".join(parts)


def _neighbours_note(result: dict[str, Any]) -> str:
    """The multi-hop decision, from the figures of this run."""
    off = "without segment neighbours (multi-hop)"
    held = [r for r in result["conversations"] if r["conversation"] == CHECKED and off in r["share"]]
    if not held:
        return f"Segment neighbours were not measured against {CHECKED} in this run (`--variants`)."
    r, budgets = held[0], result["budgets"]
    pairs = ", ".join(f"{fmt(r['share'][OURS][b], 3)} / {fmt(r['share'][off][b], 3)}" for b in budgets)
    multi = ", ".join(f"{fmt(r['share_by_category'][OURS][b].get('1'), 2)} / "
                      f"{fmt(r['share_by_category'][off][b].get('1'), 2)}" for b in budgets)
    n = r["category_questions"].get("1", 0)
    return (f"Multi-hop (segment neighbours of the strongest hits, `FusionParams.neighbour_weight`): on "
            f"{CHECKED} (in-sample: the measurement they were kept on) the evidence share with / without them is "
            f"{pairs} at {', '.join(budgets)} tokens; for "
            f"its {n} multi-hop questions alone {multi}.")


def run(conversations: str = f"{TUNED},{CHECKED}", budgets: str = DEFAULT_BUDGETS, stm: int = 10,
        variants: bool = False, responder: str = "persona", reader_url: str = "",
        reader_questions: int = 20, dump: str = "") -> dict[str, Any]:
    budget_list = sorted({int(b) for b in budgets.split(",") if b} | {2000})
    convs = [c for c in conversations.split(",") if c]
    rows = measure(convs, budget_list, stm, variants, responder, reader_url, reader_questions, bool(dump))
    if dump:  # per question, kept apart from the results file (prompts are large)
        Path(dump).write_text(json.dumps({r["conversation"]: r.pop("per_question") for r in rows}, indent=1,
                                         default=str), encoding="utf-8")
    reading = f" --reader-url URL --reader-questions {reader_questions}" if reader_url else ""
    result = json.loads(json.dumps({
        "budgets": [str(b) for b in budget_list], "stm": stm, "responder": responder, "conversations": rows,
        "reproduce": f"python -m bench context --conversations {conversations} --budgets "
                     f"{','.join(map(str, budget_list))} --stm {stm} --responder {responder}"
                     + (" --variants" if variants else "") + reading,
    }, default=str))
    if reader_url:  # a sampled run with a reader: kept apart, so it never replaces the headline run
        return finish("context_reader", result, print_reader)
    return finish("context", result, _print, _plot)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conversations", default=f"{TUNED},{CHECKED}",
                        help=f"LoCoMo conversations (both in-sample: packing chosen on {TUNED}, checked on {CHECKED})")
    parser.add_argument("--budgets", default=DEFAULT_BUDGETS, help="prompt budgets in tokens (2000 always)")
    parser.add_argument("--stm", type=int, default=10, help="short-term capacity while ingesting (default: the "
                        "product's default, 10)")
    parser.add_argument("--responder", default="persona", choices=("persona", "default"),
                        help="the test model's answers: persona (facts and summary from the pages) or default")
    parser.add_argument("--variants", action="store_true", help="also measure the parameter variants")
    parser.add_argument("--reader-url", default="", help="an OpenAI-compatible model that answers each sampled "
                        f"question from the {READER_BUDGET}-token prompts of ours, plain dense and the stock hybrid "
                        "(F1, BLEU-1); saved apart (bench/results/context_reader.json)")
    parser.add_argument("--dump", default="", help=f"write, per question, what the {READER_BUDGET}-token prompts "
                        "of ours, plain dense and the stock hybrid held (evidence found, answer found, the prompt) "
                        "to this JSON file")
    parser.add_argument("--reader-questions", type=int, default=20, help="questions per conversation the reader "
                        "answers (spread over those with a short gold answer)")


"""The pipeline against a real small model: a check a fake cannot make (slow token streams, a 4,096-token
window, imperfect answers). Too slow for CI and not part of `make bench`; run it before resolving work that
touches the LLM boundary, and keep its figures (BENCHMARKS.md renders bench/results/real_llm_check.json).

    ../shared/tools/real_llm/start_server.sh --port 18766 --daemon   # prints REAL_LLM_READY port=18766 pid=P
    python -m bench.real_llm_check --base-url http://127.0.0.1:18766/v1
    kill P                                                           # it takes both cores while it answers

On a CPU with AVX-512 the server built with the tool's default (-DGGML_NATIVE=ON) died with a general protection
fault in libggml-cpu on its first completion (2026-12-05; every call then fails with APIConnectionError and
the check reports an empty profile). Rebuild it without AVX-512:

    ~/.cache/memoryos-real-llm/bin/pip uninstall -y llama-cpp-python
    ~/.cache/memoryos-real-llm/bin/pip cache remove llama_cpp_python
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF" \
        ../shared/tools/real_llm/start_server.sh --setup-only                    # about 4 minutes on 2 cores

It publishes the first --turns turns of a LoCoMo conversation with the default settings except the base URL
and MEMORYOS_LLM_CONTEXT_TOKENS (4096, the model's window), drives the workers' code in-process as the
worker does (promotion after each publish, the heat refresh, the persona extraction when asked; then a flush,
as `memoryos import --wait` does, so pages waiting for the coalesced persona extraction are read), and checks:
every turn back exactly once in the export, no segmentation fallback, no dead letter, topics and summaries
written by the model, a non-empty profile, and that the persona is one (bench/persona_checks.py, the
product's own checks): the profile summary in the third person and not a copy of a turn, every fact naming
its subject, no theme copied from a turn, no fact a reported line ("The user said that he ..."), cut
mid-sentence or a near copy of another. These are checked on what was stored, after the pipeline's
post-check (pipeline/persona_review.py), whose repairs, rejections and retries are reported beside them.
It prints the LLM calls per 100 promoted turns (persona flushed), the time per batch and the calls by
purpose, and exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .common import ROOT, bench_settings, cleanup, fmt, md_table, reproduce_md, save_result
from .persona_answers import recording
from .persona_checks import (  # the product's own checks
    fact_form_problems,
    fact_without_subject,
    grounded,
    source_stems,
    summary_problems,
    theme_copies,
    trait_problems,
)

LOCOMO = ROOT.parent / "shared" / "data" / "locomo"
PURPOSES = ("segmentation", "persona", "retry", "fallback")
# What the persona post-check (memoryos_workers/pipeline/persona_review.py) did to the model's answers.
POST_CHECK = ("persona_facts_repaired", "persona_facts_rejected", "persona_summaries_rejected",
              "persona_quality_retries", "persona_second_facts_rejected", "persona_second_summaries_rejected",
              "persona_facts_invented", "persona_summary_sentences_invented", "persona_facts_near_copies",
              "persona_facts_chat", "persona_facts_quoted")


def check(
    base_url: str, conversation: str, turns_wanted: int, context_tokens: int, model: str | None,
    publish_seconds: float | None = None,
) -> dict[str, Any]:
    """`publish_seconds`: no batch is published after this long (the flush and the checks still run), so a run
    on a shared model server ends in time; the turns actually published are the ones checked and reported."""
    os.environ["MEMORYOS_LLM_CONTEXT_TOKENS"] = str(context_tokens)  # read by Settings like any deployment knob
    from memoryos_workers.ops.importers import locomo_turns
    from memoryos_workers.ops.user_data import collect_user_records
    from memoryos_workers.runtime import Runtime

    overrides: dict[str, Any] = {"openai_base_url": base_url, "openai_api_key": "anything"}
    if model:
        overrides["llm_model"] = model
    with tempfile.TemporaryDirectory(prefix="memoryos-real-llm-") as tmp:
        settings = bench_settings(data_dir=Path(tmp), **overrides)
        rt = Runtime(settings)
        user = "real-llm-check"
        batches: list[dict[str, Any]] = []
        persona_runs: list[dict[str, Any]] = []
        with recording() as answers:  # what the model wrote in each persona answer, what was kept
            try:
                turns = locomo_turns(LOCOMO / f"{conversation}.json", user)[:turns_wanted]
                size = settings.promotion_batch_size
                started, load_start = time.perf_counter(), os.getloadavg()
                for start in range(0, len(turns), size):
                    if publish_seconds is not None and time.perf_counter() - started > publish_seconds:
                        print(f"  publishing stopped after {start} turns ({publish_seconds:.0f} s)", flush=True)
                        turns = turns[:start]
                        break
                    rt.publisher.publish_many(turns[start : start + size])
                    before = _stats(rt)
                    t0 = time.perf_counter()
                    done = rt.promoter.run(user)
                    if done:
                        batches.append({"batches": done, "seconds": time.perf_counter() - t0,
                                        **_delta(before, _stats(rt))})
                        print(f"  batch(es) {len(batches)}: {done} in {batches[-1]['seconds']:.0f} s, "
                              f"{batches[-1]['calls']} call(s)", flush=True)
                    heat = _heat_state(rt, user)
                    if done:
                        batches[-1]["heat"] = heat
                    print(f"  heat: {heat}", flush=True)
                    if _persona_sent(rt, user) or rt.persona_worker.refresh_heat(user):
                        before, t0 = _stats(rt), time.perf_counter()
                        out = rt.persona_worker.extract(user)
                        persona_runs.append({"seconds": time.perf_counter() - t0, "pages": out.get("pages", 0),
                                             **_delta(before, _stats(rt))})
                        print(f"  persona: {out} in {persona_runs[-1]['seconds']:.0f} s", flush=True)
                # Then a flush, as `memoryos import --wait` and wait_idle(flush=True) do: pages still waiting for
                # the coalesced persona extraction (fewer than MEMORYOS_PERSONA_MIN_PAGES) are read now.
                while rt.pending.check(user, force=True).persona_kicked or _persona_sent(rt, user):
                    before, t0 = _stats(rt), time.perf_counter()
                    out = rt.persona_worker.extract(user)
                    persona_runs.append({"seconds": time.perf_counter() - t0, "pages": out.get("pages", 0),
                                         "flush": True, **_delta(before, _stats(rt))})
                    print(f"  persona (flush): {out} in {persona_runs[-1]['seconds']:.0f} s", flush=True)
                    if not out.get("pages"):
                        break
                elapsed = time.perf_counter() - started
                records = list(collect_user_records(rt, user))
                stats = _stats(rt)
                segments = [h.payload for h in rt.segments.all_for_user(user)]
                pages = [h.payload for h in rt.pages.all_for_user(user)]
                profile = rt.persona.get_profile(user)
                assistant_texts = [f.text for f in rt.persona.list("assistant", user, None)]
                fact_texts = [f.text for f in rt.persona.list("user", user)] + assistant_texts
                facts = len(fact_texts)
            finally:
                rt.close()
                cleanup(rt.redis, settings.key_prefix)
    exported = [r["turn_id"] for r in records if r["type"] == "turn"]
    published = [t["turn_id"] for t in turns]
    fallbacks = stats.get("segment_fallbacks", 0) + stats.get("segment_fallback_pages", 0)
    said = [t["user_input"] for t in turns] + [t["agent_response"] for t in turns]
    summary_issues = summary_problems(profile.summary if profile else "", said)
    no_subject = [f for f in fact_texts if fact_without_subject(f)]
    sources = source_stems(said)
    invented = [f for f in fact_texts if not grounded(f, sources)]
    by_assistant = source_stems(t["agent_response"] for t in turns)
    not_the_assistants = [f for f in assistant_texts if not grounded(f, by_assistant)]
    same = Counter(" ".join(f.lower().split()) for f in fact_texts)
    twice = sorted(t for t, n in same.items() if n > 1)
    form = fact_form_problems(fact_texts)
    traits = [(t.dimension, t.evidence) for t in profile.traits] if profile else []
    trait_issues = trait_problems(traits, source_stems(t["user_input"] for t in turns))
    copied_themes = theme_copies([str(s.get("theme") or "") for s in segments], said)
    checks = {
        "every turn back exactly once": sorted(exported) == sorted(published) and len(set(exported)) == len(exported),
        "0 segmentation fallbacks": fallbacks == 0,
        "0 dead letters": stats.get("batch_dead_letters", 0) == 0 and stats.get("persona_dead_letters", 0) == 0,
        "topics and summaries by the model": bool(segments) and all(s.get("source") == "llm" and s.get("summary")
                                                                    for s in segments)
        and all(p.get("analysis") == "llm" for p in pages),
        "a non-empty profile": profile is not None and bool(profile.summary.strip() or profile.traits),
        "profile summary in the third person, not a copy of a turn": not summary_issues,
        "every fact names its subject": bool(fact_texts) and not no_subject,
        # The long-term persona holds what the user said about themselves, not only the assistant's side.
        "the user has facts": len(fact_texts) > len(assistant_texts),
        "every fact said in the turns (half its content words or more, all but two at most)": not invented,
        "no theme copied from a turn": not copied_themes,
        "every assistant fact said in the assistant's lines": not not_the_assistants,
        "no fact stored twice": not twice,
        **{name: not items for name, items in form.items()},
        **{name: not items for name, items in trait_issues.items()},
    }
    seconds = [b["seconds"] / b["batches"] for b in batches]
    return {
        "base_url_port": base_url.rsplit(":", 1)[-1], "conversation": conversation, "turns": len(turns),
        "context_tokens": context_tokens, "model": settings.llm_model, "elapsed_s": elapsed,
        "promoted_pages": len(pages), "segments": len(segments), "facts": facts,
        "profile_summary": profile.summary[:300] if profile else "", "traits": len(profile.traits) if profile else 0,
        "themes": [s.get("theme") for s in segments][:10],
        "batches": batches, "persona_runs": persona_runs,
        "seconds_per_batch": {"mean": sum(seconds) / len(seconds) if seconds else None,
                              "max": max(seconds) if seconds else None},
        "calls_by_purpose": {p: stats.get(f"llm_calls_{p}", 0) for p in PURPOSES},
        "post_check": {k: stats.get(k, 0) for k in POST_CHECK},
        "tokens_by_purpose": {p: _tokens(stats, p) for p in PURPOSES},
        "llm_calls": stats.get("llm_calls", 0), "checks": checks, "passed": all(checks.values()),
        "calls_per_100_promoted": 100 * stats.get("llm_calls", 0) / max(len(pages), 1),
        "failures": {"summary": summary_issues, "facts without a subject": no_subject[:10],
                     "themes copied": copied_themes[:10], "facts not in the turns": invented[:10],
                     "assistant facts not in its lines": not_the_assistants[:10], "facts stored twice": twice[:10],
                     "user facts": ([] if len(fact_texts) > len(assistant_texts)
                                    else [f"none stored ({len(assistant_texts)} assistant facts)"]),
                     **{name: items[:10] for name, items in form.items()}},
        "facts_sample": fact_texts[:10], "facts_all": fact_texts,
        "persona_answers": answers,
        "profile_summary_all": profile.summary if profile else "",
        "traits_all": [{"dimension": d, "level": t.level, "evidence": e}
                       for (d, e), t in zip(traits, profile.traits if profile else [], strict=True)],
        "turns_wanted": turns_wanted, "load_average": {"start": [round(x, 1) for x in load_start],
                                                       "end": [round(x, 1) for x in os.getloadavg()]},
        "reproduce": f"python -m bench.real_llm_check --base-url http://127.0.0.1:PORT/v1 --conversation "
                     f"{conversation} --turns {turns_wanted} --context-tokens {context_tokens}"
                     + (f" --publish-seconds {publish_seconds:g}" if publish_seconds is not None else ""),
    }


def _persona_sent(rt: Any, user: str) -> bool:
    """A persona task was sent (the kick flag is up): the promoter's own check sends one when the coalescing
    wait is over, to a broker this in-process run does not consume, so the run does what the worker would.
    Without this, a slow model let the wait expire before 50 pages were unread: every check re-sent the task,
    `refresh_heat` could not claim the flag, and the flush saw it up and kicked nothing: no persona call at
    all (the first real run of 2026-12-05, code of ccbf47a, and one of dc63eac, stopped)."""
    return bool(rt.redis.exists(rt.keys.user(user).persona_kick))


def _heat_state(rt: Any, user: str) -> dict[str, Any]:
    """What decides the persona trigger after a batch: segments, their hottest heat, unread pages in hot ones,
    and the coalescing flags (a run without a persona call is explained by these)."""
    keys = rt.keys.user(user)
    stats = rt.segment_stats
    heats = stats.heats(keys)
    hot = stats.hot(keys, rt.settings.mid_term_heat_threshold)
    return {"segments": len(heats), "max_heat": round(max(heats.values()), 2) if heats else None,
            "hot": len(hot), "unread_in_hot": stats.unanalysed(keys, hot),
            "pages": sum(stats.lengths(keys).values()),
            "persona_kick": bool(rt.redis.exists(keys.persona_kick)),
            "persona_due_at": rt.redis.hget(keys.state, "persona_due_at") is not None}


def _tokens(stats: dict[str, int], purpose: str) -> int:
    return stats.get(f"llm_prompt_tokens_{purpose}", 0) + stats.get(f"llm_completion_tokens_{purpose}", 0)


def _stats(rt: Any) -> dict[str, int]:
    from memoryos_workers.counters import read_counters

    return read_counters(rt.redis, rt.keys)


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    out = {"calls": after.get("llm_calls", 0) - before.get("llm_calls", 0)}
    for p in PURPOSES:
        out[p] = after.get(f"llm_calls_{p}", 0) - before.get(f"llm_calls_{p}", 0)
    out["tokens"] = (after.get("llm_prompt_tokens", 0) + after.get("llm_completion_tokens", 0)
                     - before.get("llm_prompt_tokens", 0) - before.get("llm_completion_tokens", 0))
    return out


def _print(result: dict[str, Any]) -> None:
    print(f"\nreal model check: {result['turns']} turns of {result['conversation']}, window "
          f"{result['context_tokens']} tokens, {result['elapsed_s']:.0f} s in all")
    for name, ok in result["checks"].items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    per = result["seconds_per_batch"]
    print(f"  time per batch: mean {fmt(per['mean'], 0)} s, max {fmt(per['max'], 0)} s over {len(result['batches'])} "
          f"promotion run(s); persona: " + ", ".join(f"{r['pages']} pages in {r['seconds']:.0f} s"
                                                      for r in result["persona_runs"]))
    print("  calls: " + ", ".join(f"{p} {n}" for p, n in result["calls_by_purpose"].items())
          + f" (total {result['llm_calls']}); segments {result['segments']}, facts {result['facts']}, "
            f"traits {result['traits']}")
    print(f"  themes: {result['themes']}")
    print(f"  profile: {result['profile_summary']!r}")
    print(f"  LLM calls per 100 promoted turns (persona flushed): {result['calls_per_100_promoted']:.1f}")
    print("  post-check: " + _post_check(result))
    for what, items in result["failures"].items():
        for item in items:
            print(f"  failed, {what}: {item!r}")


def markdown(result: dict[str, Any]) -> str:
    per = result["seconds_per_batch"]
    rows = [(name, "pass" if ok else "FAIL") for name, ok in result["checks"].items()]
    # A check tightened after the run, applied to what the run stored (named with its commit).
    rows += [(name, "FAIL") for name, items in result.get("failures_after_tightening", {}).items() if items]
    calls = ", ".join(f"{p} {n}" for p, n in result["calls_by_purpose"].items())
    return "\n\n".join([
        "## 12. A real small model",
        f"Qwen2.5-Coder-0.5B-Instruct (Q4_K_M) under llama.cpp's OpenAI-compatible server on this machine's 2 cores "
        f"(`../shared/tools/real_llm/`), {result['context_tokens']}-token window, the server enforcing each call's "
        f"schema with a grammar. The first {result['turns']} turns of LoCoMo {result['conversation']}"
        + (f" (of {result['turns_wanted']} asked: publishing stopped at the run's time slot)"
           if result.get("turns_wanted", result["turns"]) > result["turns"] else "")
        + (f", load average {result['load_average']['start'][0]} at the start and {result['load_average']['end'][0]} "
           "at the end (other work on the 2 cores)" if result.get("load_average") else "")
        + " published with "
        "the default settings except the base URL and MEMORYOS_LLM_CONTEXT_TOKENS; the workers' code driven "
        "in-process as the worker runs it. Not part of `make bench` (it takes minutes and both cores).",
        md_table(("check", "result"), rows),
        *([f"Note: {result['note']}"] if result.get("note") else []),
        f"Time per batch of 10 pages: mean {fmt(per['mean'], 0)} s, longest {fmt(per['max'], 0)} s; persona: "
        + ", ".join(f"{r['pages']} pages in {r['seconds']:.0f} s" for r in result["persona_runs"])
        + f". LLM calls: {calls} (total {result['llm_calls']}) for {result['promoted_pages']} promoted pages "
        f"({fmt(result.get('calls_per_100_promoted'), 1)} per 100 promoted turns, persona flushed); "
        f"{result['segments']} segments, {result['facts']} facts, {result['traits']} traits. Themes stored (a theme "
        "copied from a turn is named from its keywords when the answer is read): "
        + "; ".join(f"'{t}'" for t in result["themes"][:6]) + f". Profile summary: {result['profile_summary']!r}.",
        *([f"The persona post-check (pipeline/persona_review.py) on the model's answers: {_post_check(result)}; "
           "the checks above are of what was stored after it."] if result.get("post_check") else []),
        *([f"What failed: {_failures(result)}."] if _failures(result) else []),
        reproduce_md(result["reproduce"]),
    ])


def _post_check(result: dict[str, Any]) -> str:
    done = result.get("post_check") or {}
    return (f"{done.get('persona_facts_repaired', 0)} facts said in the third person, "
            f"{done.get('persona_facts_rejected', 0)} dropped, {done.get('persona_summaries_rejected', 0)} "
            f"summaries rejected, {done.get('persona_quality_retries', 0)} calls asked again (after which "
            f"{done.get('persona_second_facts_rejected', 0)} facts and "
            f"{done.get('persona_second_summaries_rejected', 0)} summaries were dropped); "
            f"{done.get('persona_facts_invented', 0)} facts and {done.get('persona_summary_sentences_invented', 0)} "
            "summary sentences dropped as not said in the pages, "
            f"{done.get('persona_facts_near_copies', 0)} facts dropped or kept as the shown fact they said again, "
            f"{done.get('persona_facts_chat', 0)} dropped as chat or a refusal, "
            f"{done.get('persona_facts_quoted', 0)} kept as the user's quoted line says them")


def _failures(result: dict[str, Any]) -> str:
    found = {**result.get("failures", {}), **result.get("failures_after_tightening", {})}
    return "; ".join(f"{what}: " + ", ".join(repr(i) for i in items[:3]) for what, items in found.items() if items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.real_llm_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True, help="the real model's OpenAI-compatible URL, e.g. "
                        "http://127.0.0.1:18766/v1")
    parser.add_argument("--conversation", default="conv-26")
    parser.add_argument("--turns", type=int, default=120)
    parser.add_argument("--context-tokens", type=int, default=4096)
    parser.add_argument("--model", default=None, help="model name sent (the server accepts any)")
    parser.add_argument("--publish-seconds", type=float, default=None, help="publish no batch after this many "
                        "seconds (then flush and check what was published): for a server shared in time slots")
    parser.add_argument("--note", default=None, help="a note kept with the result (e.g. the machine's load)")
    args = parser.parse_args(argv)
    result = check(args.base_url, args.conversation, args.turns, args.context_tokens, args.model,
                   args.publish_seconds)
    if args.note:
        result["note"] = args.note
    save_result("real_llm_check", result)
    _print(result)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Facts that change over months: the share of "now" questions whose prompt holds the current value, stale
values shown as current, "before" questions reaching the old value with its window, and LLM calls per 100
promoted turns against the same story with supersession's answers left out (the default test model).

Each story is chatted period by period (months apart) through the one memory interface (reads over RPC) with
a Celery worker process, real Redis, Qdrant Edge and fastembed; each period is flushed
(`wait_idle(flush=True)`) before the next. The test model supersedes by rule
(memoryos_workers/testing/fact_responder.py); with
--base-url the story goes to a real model instead (`../shared/tools/real_llm`), and a value counts when its
word is in a fact line (the model writes its own sentences).
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import bench_settings, cleanup, finish, md_table, reproduce_md

NOW = "2025-03-01T12:00:00+00:00"
WAIT = {"deadline_ms": 120_000, "on_deadline": "raise"}  # a loaded machine: the full answer, never Redis's alone


def _word(text: str) -> str:
    return text.rstrip(".").split()[-1]


def _shown(prompt: str, text: str, *, current: bool, window: str | None, exact: bool) -> bool:
    from memoryos_workers.testing.fact_story import fact_lines

    for line in fact_lines(prompt):
        found = f'"{text}"' in line if exact else re.search(rf"\b{re.escape(_word(text))}\b", line, re.I)
        if not found:
            continue
        ended = "no longer true" in line
        if current and not ended:
            return True
        if not current and ended and (window is None or window in line):
            return True
    return False


def _ingest(memory: Any, story: Any, user: str) -> float:
    from memoryos_workers.testing.fact_story import story_turns

    started = time.perf_counter()
    for period in story_turns(story, user):
        memory.publish(period)
        memory.wait_idle(user, timeout=3600, flush=True)
    if story.correction:
        wrong = next((e for e in memory.list_facts(user) if e.text == story.correction[0]), None)
        if wrong is not None:
            memory.correct_fact(user, wrong.fact_id, text=story.correction[1], by="person:bench")
    return time.perf_counter() - started


def _measure(memory: Any, story: Any, user: str, budget: int | None, exact: bool) -> dict[str, Any]:
    now_ok = stale = 0
    misses = []
    for q in story.now:
        prompt = memory.retrieve_for(user, q.query, now=NOW, max_tokens=budget, **WAIT).to_prompt()
        has = q.current is None or _shown(prompt, q.current, current=True, window=None, exact=exact)
        wrong = [s for s in q.stale if _shown(prompt, s, current=True, window=None, exact=exact)
                 and (exact or q.current is None or _word(s) != _word(q.current))]
        now_ok += has
        stale += bool(wrong)
        if not has or wrong:
            misses.append({"query": q.query, "missing": None if has else q.current, "stale": wrong})
    before_ok = 0
    for q in story.before:
        prompt = memory.retrieve_for(user, q.query, now=NOW, max_tokens=budget, **WAIT, **q.options).to_prompt()
        if _shown(prompt, q.old, current=False, window=q.window if exact else None, exact=exact):
            before_ok += 1
        else:
            misses.append({"query": q.query, "missing_before": q.old, "window": q.window})
    current = {e.text for e in memory.list_facts(user)}
    kept = sum(t in current for t in story.unrelated) if exact else sum(
        any(_word(t).lower() in c.lower() for c in current) for t in story.unrelated)
    return {"budget": budget, "now": len(story.now), "now_current": now_ok / len(story.now),
            "stale_as_current": stale, "before": len(story.before), "before_reached": before_ok / len(story.before),
            "unrelated_kept": f"{kept}/{len(story.unrelated)}", "misses": misses[:12]}


def _wait_for_worker(settings: Any, timeout: float = 300.0) -> None:
    """Until the worker serves the retrieval lane (it has opened the store, which this process must not)."""
    from producers.retrieve import RetrievalClient

    client, deadline = RetrievalClient(settings), time.monotonic() + timeout
    while client.lane()["retrieval_servers"] < 1:
        if time.monotonic() > deadline:
            raise TimeoutError("the facts bench's worker did not start")
        time.sleep(0.2)


def _run_story(name: str, story: Any, base_url: str, responder: Any, fake: Any, budgets: list[int | None],
               model: str | None) -> dict[str, Any]:
    from memoryos_workers.counters import read_counters
    from memoryos_workers.interface import open_memory
    from producers.wire.contract import ALL_QUEUES

    from .common import worker

    if fake is not None:
        fake.responder = responder
    overrides: dict[str, Any] = {"openai_base_url": base_url, "openai_api_key": "anything"}
    env = {"MEMORYOS_OPENAI_BASE_URL": base_url, "MEMORYOS_OPENAI_API_KEY": "anything"}
    if model:
        overrides["llm_model"] = model
        env["MEMORYOS_LLM_MODEL"] = model
    with tempfile.TemporaryDirectory(prefix="memoryos-bench-facts-") as tmp:
        settings = bench_settings(data_dir=Path(tmp) / "store", **overrides)
        user = f"lea-{name}"
        with worker(settings, Path(tmp) / "worker.log", ALL_QUEUES, 2, f"facts-{name}", **env):
            _wait_for_worker(settings)
            memory = open_memory(settings, worker=False)  # the worker holds the store: reads over RPC
            try:
                seconds = _ingest(memory, story, user)
                stats = read_counters(memory.runtime.redis, memory.runtime.keys)
                promoted = memory.inspect(user)["pages"]
                rows = [_measure(memory, story, user, b, exact=fake is not None) for b in budgets]
                history = memory.list_facts(user, history=True)
                # What a real model wrote, kept with its figures so a reader can see why they are what they are.
                written = None if fake is not None else _written(memory.persona(user), history)
            finally:
                memory.close()
                cleanup(memory.runtime.redis, settings.key_prefix)
    calls = {p: stats.get(f"llm_calls_{p}", 0) for p in ("segmentation", "persona", "retry", "fallback")}
    return {"story": name, "periods": len(story.periods), "changes": story.changes, "promoted_turns": promoted,
            "ingest_s": seconds, "llm_calls": stats.get("llm_calls", 0), "calls_by_purpose": calls,
            "calls_per_100_turns": 100 * stats.get("llm_calls", 0) / max(1, promoted),
            "facts_current": sum(e.current for e in history), "facts_ended": sum(not e.current for e in history),
            "rows": rows, **({"written": written} if written else {})}


def _written(persona: Any, history: list[Any]) -> dict[str, Any]:
    profile = persona.profile
    return {"summary": profile.summary if profile else None,
            "facts": [{"text": e.text, "status": e.status, "window": e.window()} for e in history]}


def run(months: int = 36, base_url: str | None = None, model: str | None = None, context_tokens: int = 4096,
        skip_generated: bool = False) -> dict[str, Any]:
    import os

    from memoryos_workers.testing import fact_story
    from memoryos_workers.testing.fact_responder import fact_responder
    from memoryos_workers.testing.responders import default_responder

    stories = [("scripted", fact_story.scripted())]
    if not skip_generated and base_url is None:
        stories.append((f"generated-{months}", fact_story.generated(months)))
    budgets: list[int | None] = [0, None]  # no budget, and the default MEMORYOS_CONTEXT_MAX_TOKENS
    results = []
    if base_url is None:
        from memoryos_workers.testing.fake_llm import FakeLLM

        with FakeLLM() as fake:
            for name, story in stories:
                results.append(_run_story(name, story, fake.base_url, fact_responder, fake, budgets, model))
                base = _run_story(f"{name}-baseline", story, fake.base_url, default_responder, fake, [], model)
                results[-1]["baseline_calls_per_100_turns"] = base["calls_per_100_turns"]
    else:
        os.environ["MEMORYOS_LLM_CONTEXT_TOKENS"] = str(context_tokens)
        for name, story in stories:
            results.append(_run_story(f"{name}-real", story, base_url, None, None, budgets, model))
    load = os.getloadavg()
    command = "python -m bench facts" + (f" --base-url {base_url}" if base_url else "") + (
        f" --months {months}" if months != 36 else "")
    out = {"model": "test model (rule)" if base_url is None else (model or "real model"), "stories": results,
           "load_average": [round(x, 2) for x in load], "reproduce": command}
    return finish("facts" if base_url is None else "facts_real", out, _print)


def _print(result: dict[str, Any]) -> None:
    print(markdown(result))


def markdown(result: dict[str, Any]) -> str:
    rows = []
    for s in result["stories"]:
        for r in s["rows"]:
            rows.append([s["story"], s["changes"], "none" if r["budget"] == 0 else "default",
                         f"{r['now_current']:.2f} of {r['now']}", r["stale_as_current"],
                         f"{r['before_reached']:.2f} of {r['before']}", r["unrelated_kept"],
                         f"{s['calls_per_100_turns']:.1f}", _fmt(s.get("baseline_calls_per_100_turns"))])
    headers = ["story", "changes", "budget", "now: current shown", "stale as current", "before: old value + window",
               "unrelated kept", "LLM calls / 100 turns", "same story, no supersession"]
    return "\n\n".join([
        "## 14. Facts over months" if result["model"].startswith("test model") else
        f"## 15. Facts over months with a real small model ({result['model']})",
        "A user's facts change over months (home, job, partner, pet, diet, plans, a car sold, a person's "
        "correction). After ingestion, each \"now\" question's prompt must show the current value as current and "
        "no old one as current; each \"before\" question must reach the old value with the months it held. "
        f"Load average during the run: {result['load_average']}.",
        md_table(headers, rows),
        "Budget \"none\": every fact retrieval chose is in the prompt (what supersession and retrieval decide). "
        "\"default\": MEMORYOS_CONTEXT_MAX_TOKENS, where producers/context/fit.py gives summaries, profile and "
        "facts a small share before pages and drops a fact whose words a chosen page already says (how that "
        "share is given is issue 21's); a fact dropped there is missing, never shown stale as current. LLM calls: "
        "every period is flushed, so each costs a persona call; the same with and without supersession.",
        *([result["note"]] if result.get("note") else []),  # a person's reading of the run, kept with it
        reproduce_md(result["reproduce"]),
    ])


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--months", type=int, default=36, help="periods of the generated story (at most 45)")
    parser.add_argument("--base-url", default=None, help="a real OpenAI-compatible model instead of the test model")
    parser.add_argument("--model", default=None, help="the model name to ask for (with --base-url)")
    parser.add_argument("--context-tokens", type=int, default=4096, help="the real model's window")
    parser.add_argument("--skip-generated", action="store_true", help="only the scripted story")

"""`memoryos demo`: the embedded setup end to end on a conversation shipped with the package."""

from __future__ import annotations

import json
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from importlib import resources
from typing import Any, TextIO

from tqdm import tqdm

from memoryos_workers.interface import Memory, open_memory

QUESTION = "What is the name of my cat?"


def sample_conversation() -> list[dict[str, Any]]:
    text = (resources.files("memoryos_workers") / "data" / "sample_conversation.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _short(text: str, width: int = 70) -> str:
    return textwrap.shorten(text, width=width, placeholder="…")


def run_demo(memory: Memory | None = None, *, out: TextIO = sys.stdout, question: str = QUESTION,
             keep: bool = False) -> dict[str, Any]:
    """Publishes the sample conversation for a new user, waits for the background work, prints what each tier
    holds and one retrieval. `memory` (default: `open_memory()`, closed at the end) must do its background
    work: an in-process worker, or the deployment's. The demo user is forgotten at the end unless `keep`: the
    demo runs against the configured Redis and store, which may be a deployment's, and each run makes a new
    user (13 keys and its pages were left behind per run before)."""
    own = memory is None
    memory = memory or open_memory(worker=True)
    say: Callable[[str], None] = lambda line="": print(line, file=out)  # noqa: E731
    user_id = f"demo-{uuid.uuid4().hex[:8]}"
    turns = [dict(turn, user_id=user_id, assistant_id="demo-assistant") for turn in sample_conversation()]
    store = memory.settings.qdrant_url or memory.settings.data_dir
    say(f"MemoryOS workers demo: user {user_id}, {len(turns)} turns, store {store}")
    try:
        started = time.perf_counter()
        for turn in tqdm(turns, desc="publishing turns", unit="turn", file=sys.stderr, disable=not sys.stderr.isatty()):
            memory.publish([turn])
        published = time.perf_counter() - started
        memory.wait_idle(user_id, timeout=120, flush=True)
        settled = time.perf_counter() - started
        report = _report(memory, user_id, question, say)
        if keep:
            say(f"\nkept user {user_id}: `memoryos inspect {user_id}` shows it, `memoryos forget {user_id}` removes it")
        else:
            removed = memory.forget(user_id)
            report["forgotten"] = removed
            say(f"\nforgot user {user_id} ({sum(removed.values())} records; run with --keep to keep it)")
    finally:
        if own:
            memory.close()
    say(f"\npublished {len(turns)} turns in {published * 1000:.1f} ms; background work done after {settled:.2f} s")
    return report


def _report(memory: Memory, user_id: str, question: str, say: Callable[[str], None]) -> dict[str, Any]:
    view = memory.inspect(user_id)
    stm, pages, segments = view["short_term"], view["recent_pages"], view["segments"]
    say(f"\nshort-term memory (Redis): {len(stm)} turns, the last {memory.settings.short_term_capacity} published")
    for page in stm[-3:]:
        say(f"  #{page['seq']:<3} {page['timestamp'][:10]}  user: {_short(page['user_input'])}")
    say(f"pending (Redis, waiting for a worker): {view['pending_turns']} turns")
    say(f"mid-term pages (vector store): {view['pages']} pages")
    for page in pages[:3]:
        say(f"  #{page['seq']:<3} {str(page['timestamp'])[:10]}  user: {_short(page['user_input'])}")
    say(f"mid-term segments (vector store, heat in Redis): {len(segments)}")
    for seg in segments[:5]:
        say(f"  heat {seg['heat']:5.2f}  {seg['pages']:>3} pages  [{seg['source']}] "
            f"{_short(seg['theme'], 40)}: {_short(', '.join(seg['keywords']), 50)}")
    if segments and all(seg["source"] == "fallback" for seg in segments):
        say("  (segments were built by the fallback, without the LLM: set MEMORYOS_OPENAI_API_KEY or "
            "MEMORYOS_OPENAI_BASE_URL for LLM topics and summaries)")
    profile = view["profile_detail"]
    if profile:
        facts = memory.facts("user", user_id)
        say(f"long-term persona: profile with {len(profile['traits'])} traits, {len(facts)} user facts")
        say(f"  {_short(profile['summary'], 100)}")
    else:
        say("long-term persona: none yet (persona extraction needs an LLM endpoint)")
    context = memory.retrieve_for(user_id, question, top_k=3, max_tokens=0)
    say(f"\nretrieval for {question!r} ({context.timings_ms.get('total', 0):.1f} ms):")
    for page in context.pages:
        say(f"  {page.score:.3f}  user: {_short(page.user_input)}")
        say(f"         assistant: {_short(page.agent_response)}")
    top = context.pages[0].model_dump(mode="json") if context.pages else None
    return {"user_id": user_id, "short_term": len(stm), "pending": view["pending_turns"], "pages": view["pages"],
            "segments": len(segments), "top_hit": top}

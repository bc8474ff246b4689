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

from memoryos_workers.runtime import Runtime, get_runtime
from memoryos_workers.worker.embedded import EmbeddedWorker
from producers.wire import state

QUESTION = "What is the name of my cat?"


def sample_conversation() -> list[dict[str, Any]]:
    text = (resources.files("memoryos_workers") / "data" / "sample_conversation.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _short(text: str, width: int = 70) -> str:
    return textwrap.shorten(text, width=width, placeholder="…")


def run_demo(runtime: Runtime | None = None, *, out: TextIO = sys.stdout, question: str = QUESTION) -> dict[str, Any]:
    rt = runtime or get_runtime()
    say: Callable[[str], None] = lambda line="": print(line, file=out)  # noqa: E731
    user_id = f"demo-{uuid.uuid4().hex[:8]}"
    turns = [dict(turn, user_id=user_id, assistant_id="demo-assistant") for turn in sample_conversation()]
    store = rt.settings.qdrant_url or rt.settings.data_dir
    say(f"MemoryOS workers demo: user {user_id}, {len(turns)} turns, store {store}")
    with EmbeddedWorker(rt):
        started = time.perf_counter()
        for turn in tqdm(turns, desc="publishing turns", unit="turn", file=sys.stderr, disable=not sys.stderr.isatty()):
            rt.publisher.publish(turn)
        published = time.perf_counter() - started
        rt.pending.wait_idle(user_id, timeout=120, flush=True)
        settled = time.perf_counter() - started
        report = _report(rt, user_id, question, say)
    say(f"\npublished {len(turns)} turns in {published * 1000:.1f} ms; background work done after {settled:.2f} s")
    return report


def _report(rt: Runtime, user_id: str, question: str, say: Callable[[str], None]) -> dict[str, Any]:
    keys = rt.keys.user(user_id)
    stm = state.short_term(rt.redis, keys)
    waiting = state.buffered(rt.redis, keys) + [p for b in state.batches(rt.redis, keys) for p in b.pages]
    pages = rt.pages.all_for_user(user_id)
    say(f"\nshort-term memory (Redis): {len(stm)} turns, the last {rt.settings.short_term_capacity} published")
    for page in stm[-3:]:
        say(f"  #{page.seq:<3} {page.timestamp:%Y-%m-%d}  user: {_short(page.user_input)}")
    say(f"pending (Redis, waiting for a worker): {len(waiting)} turns")
    say(f"mid-term pages (vector store): {len(pages)} pages")
    for hit in pages[:3]:
        say(f"  #{hit.payload['seq']:<3} {hit.payload['timestamp'][:10]}  user: {_short(hit.payload['user_input'])}")
    segments = rt.segments.all_for_user(user_id)
    heats = rt.segment_stats.heats(keys)
    lengths = rt.segment_stats.lengths(keys)
    say(f"mid-term segments (vector store, heat in Redis): {len(segments)}")
    for hit in sorted(segments, key=lambda h: -heats.get(h.id, 0.0))[:5]:
        p = hit.payload
        say(f"  heat {heats.get(hit.id, 0.0):5.2f}  {lengths.get(hit.id, '?'):>3} pages  [{p.get('source')}] "
            f"{_short(p.get('theme', ''), 40)}: {_short(', '.join(p.get('keywords', [])), 50)}")
    if not rt.llm.configured:
        say("  (no LLM configured: segments were built by the fallback; set MEMORYOS_OPENAI_API_KEY or "
            "MEMORYOS_OPENAI_BASE_URL for LLM topics and summaries)")
    profile = rt.persona.get_profile(user_id)
    facts = rt.persona.list("user", user_id)
    if profile:
        say(f"long-term persona: profile with {len(profile.traits)} traits, {len(facts)} user facts")
        say(f"  {_short(profile.summary, 100)}")
    else:
        say("long-term persona: none yet (persona extraction needs an LLM endpoint)")
    hits = rt.pages.search(user_id, question, limit=3)
    say(f"\nretrieval for {question!r}:")
    for hit in hits:
        say(f"  {hit.score:.3f}  user: {_short(hit.payload['user_input'])}")
        say(f"         assistant: {_short(hit.payload['agent_response'])}")
    return {"user_id": user_id, "short_term": len(stm), "pending": len(waiting), "pages": len(pages),
            "segments": len(segments),
            "top_hit": hits[0].payload if hits else None}

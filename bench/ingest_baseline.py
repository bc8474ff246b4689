"""Ingestion throughput, the baseline (bench/ingest.py): MemoryOS's per-page update inside the request, three
sequential LLM calls and one embedding per promoted turn, in one thread."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

BASELINE = "MemoryOS inline"


def _inline_page(client: Any, model: str, previous: tuple[str, str], page: tuple[str, str], embedder: Any) -> int:
    """Continuity check, meta summary, multi-topic summary (sequential, as MemoryOS), then the page's
    embedding; returns the tokens the three calls used."""
    prev_text = f"User: {previous[0]}\nAssistant: {previous[1]}"
    text = f"User: {page[0]}\nAssistant: {page[1]}"
    prompts = [
        f"Previous exchange:\n{prev_text}\n\nCurrent exchange:\n{text}\n\nDoes the current exchange continue the "
        "previous one? Answer true or false.",
        f"Running summary of this dialogue chain: (none yet)\n\nNew exchange:\n{text}\n\nUpdate the running summary "
        "of the chain in a few sentences.",
        f"Conversation:\n{text}\n\nList the themes of this conversation as a JSON array of objects with theme, "
        "keywords and content (a summary).",
    ]
    tokens = 0
    for prompt in prompts:
        reply = client.chat.completions.create(model=model, messages=[
            {"role": "system", "content": "You maintain the memory of a conversational assistant."},
            {"role": "user", "content": prompt},
        ])
        tokens += reply.usage.total_tokens if reply.usage else 0
    embedder.embed([f"User: {page[0]} Assistant: {page[1]}"])
    return tokens


def _inline(base_url: str, model: str, embedder: Any, dialogue: Sequence[tuple[str, str]], n: int,
            latency: float) -> dict[str, Any]:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0)
    _inline_page(client, model, dialogue[0], dialogue[1], embedder)  # warm up: connection open
    tokens = 0
    t0 = time.perf_counter()
    for i in tqdm(range(n), desc=f"{BASELINE} @{latency * 1000:.0f} ms", unit="turn", leave=False):
        previous, page = dialogue[(i + 1) % len(dialogue)], dialogue[(i + 2) % len(dialogue)]
        tokens += _inline_page(client, model, previous, page, embedder)
    seconds = time.perf_counter() - t0
    client.close()
    return {"latency_ms": latency * 1000, "turns": n, "pages": n, "seconds": seconds, "pages_per_s": n / seconds,
            "llm_calls_per_100": 300.0, "tokens_per_100": 100 * tokens / n}

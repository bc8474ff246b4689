"""LLM calls and tokens per 100 ingested turns on a LoCoMo conversation, beside MemoryOS's
per-page scheme (3 calls per promoted page: continuity check, meta summary, topic summary).

The LLM is the fake OpenAI-compatible server from the tests (real HTTP, the real openai client),
answering competently; what is counted is how many calls our pipeline makes, which does not depend
on the model. Workers run in-process (the promote task's code, without the broker).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from tqdm import tqdm

from .common import bench_settings, cleanup, reproduce

LOCOMO = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "locomo"


def run(conversation: str = "conv-26", batch_size: int = 10) -> dict[str, float]:
    from memoryos_workers.importers import locomo_turns
    from memoryos_workers.persona import PersonaWorker
    from memoryos_workers.promotion import Promoter
    from memoryos_workers.runtime import Runtime
    from tests.fake_llm import FakeLLM
    from tests.llm_responders import default_responder

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
            promoter = Promoter(rt)
            persona = PersonaWorker(rt)
            for start in tqdm(range(0, len(turns), batch_size), desc=f"ingest {conversation}", unit="batch"):
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
    tokens = stats.get("llm_prompt_tokens", 0) + stats.get("llm_completion_tokens", 0)
    persona_calls = stats.get("persona_extractions", 0)
    memoryos_calls = 3 * promoted
    result = {
        "turns": n, "promoted_pages": promoted, "llm_calls": calls,
        "calls_per_100_turns": 100 * calls / n, "tokens_per_100_turns": 100 * tokens / n,
        "memoryos_calls_per_100_turns": 100 * memoryos_calls / n, "fallbacks": stats.get("segment_fallbacks", 0),
        "persona_calls": persona_calls, "segmentation_calls": calls - persona_calls,
    }
    print(f"\nLLM cost of ingestion: LoCoMo {conversation}, {n} turns ({promoted} promoted), batch size {batch_size}")
    print(f"{'':34} {'calls':>7} {'per 100 turns':>14} {'ratio':>7}")
    print(f"{'MemoryOS per-page (3 per page)':34} {memoryos_calls:7d} {result['memoryos_calls_per_100_turns']:14.1f} "
          f"{1.0:7.2f}")
    print(f"{'memoryos-workers (batch+persona)':34} {calls:7d} {result['calls_per_100_turns']:14.1f} "
          f"{calls / max(1, memoryos_calls):7.2f}")
    print(f"of which segmentation {calls - persona_calls}, persona extraction {persona_calls}")
    print(f"tokens per 100 turns (fake LLM's count, ~4 chars/token): {result['tokens_per_100_turns']:.0f}; "
          f"fallbacks: {result['fallbacks']}")
    print("floor: at most 20 calls per 100 turns at the default batch size")
    print(reproduce(f"python -m bench llm_cost --conversation {conversation} --batch-size {batch_size}"))
    Path(__file__).parent.joinpath("results").mkdir(exist_ok=True)
    Path(__file__).parent.joinpath("results", f"llm_cost_{conversation}.json").write_text(json.dumps(result, indent=1))
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conversation", default="conv-26")
    parser.add_argument("--batch-size", type=int, default=10)

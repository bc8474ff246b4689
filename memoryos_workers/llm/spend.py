"""What one piece of background work spent on the LLM, by purpose (memoryos_workers.counters.LLM_PURPOSES:
segmentation, persona, retry, fallback), added to the deployment's counters once the work is done.
Segmentation and persona extraction both account through it."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from memoryos_workers.counters import count, llm_usage
from memoryos_workers.llm.base import Usage
from producers.wire.keys import Sharded


@dataclass
class Spend:
    """Calls and tokens of one analysis by purpose (memoryos_workers.counters.LLM_PURPOSES)."""

    by_purpose: dict[str, Usage] = field(default_factory=dict)

    def add(self, purpose: str, usage: Usage | None, *, first: bool = True) -> None:
        """`first`: the call began a unit of work, so its client-side retries (calls beyond the first) are
        counted as retries; otherwise every call is counted under `purpose`."""
        if usage is None or not usage.calls:
            return
        extra = usage.calls - 1 if first and purpose != "retry" else 0
        share = extra / usage.calls
        retried = Usage(extra, round(usage.prompt_tokens * share), round(usage.completion_tokens * share))
        own = Usage(usage.calls - extra, usage.prompt_tokens - retried.prompt_tokens,
                    usage.completion_tokens - retried.completion_tokens)
        for name, part in ((purpose, own), ("retry", retried)):
            if part.calls:
                self.by_purpose.setdefault(name, Usage()).add(part)

    @property
    def total(self) -> Usage:
        out = Usage()
        for usage in self.by_purpose.values():
            out.add(usage)
        return out

    def flush(self, client: redis.Redis, stats_key: Sharded) -> None:
        counters: dict[str, int] = {}
        for purpose, usage in self.by_purpose.items():
            for name, value in llm_usage(purpose, usage).items():
                counters[name] = counters.get(name, 0) + value
        count(client, stats_key, **counters)

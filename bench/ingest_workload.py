"""Ingestion throughput, the workload (bench/ingest.py): LoCoMo turns of both conversations, dealt round-robin
over users, each user reading the dialogue on from its own offset."""

from __future__ import annotations

import random
from collections.abc import Sequence

from .common import ROOT

LOCOMO = ROOT.parent / "shared" / "data" / "locomo"
CONVERSATIONS = ("conv-26", "conv-30")


def _dialogue() -> list[tuple[str, str]]:
    """(user_input, agent_response) of every LoCoMo turn of both conversations, in order."""
    from memoryos_workers.ops.importers import locomo_turns

    turns = [t for c in CONVERSATIONS for t in locomo_turns(LOCOMO / f"{c}.json", "bench")]
    return [(t["user_input"], t["agent_response"]) for t in turns]


def _turns(dialogue: Sequence[tuple[str, str]], users: Sequence[str], n: int, rng: random.Random) -> list[dict]:
    """n turns round-robin over users; each user reads the dialogue on from its own random offset."""
    offsets = {u: rng.randrange(len(dialogue)) for u in users}
    out = []
    for i in range(n):
        user = users[i % len(users)]
        text, reply = dialogue[(offsets[user] + i // len(users)) % len(dialogue)]
        out.append({"user_id": user, "user_input": text, "agent_response": reply, "turn_id": f"{user}-{i}"})
    return out


def _per_user(turns: Sequence[dict]) -> dict[str, int]:
    """Turns published per user; all but the last `short_term_capacity` of each end as pages."""
    counts: dict[str, int] = {}
    for t in turns:
        counts[t["user_id"]] = counts.get(t["user_id"], 0) + 1
    return counts

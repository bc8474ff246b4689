"""Retrieval under load, the store (bench/retrieval_load.py): target users written straight into the embedded
store with pages, segments and a full persona; the retrieve task's own cost against one query embedding; and,
after the run, the check that every published turn is in the store or in short-term memory."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from .common import percentile, summary


def _facts(rng: random.Random, n: int, who: str) -> list[Any]:
    """n distinct everyday facts (distinct enough that none is taken for a near-duplicate of another)."""
    from schemas.persona import Fact

    from .retrieval import _ACTIONS, _PEOPLE, _THINGS, _WHEN

    seen: set[str] = set()
    while len(seen) < n:
        seen.add(f"{who} {rng.choice(_ACTIONS)} {rng.choice(_THINGS)} with {rng.choice(_PEOPLE)} "
                 f"{rng.choice(_WHEN)}, fact {len(seen)}")
    return [Fact(text=text, date=f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}") for i, text in enumerate(sorted(seen))]


def _persona(rt: Any, user: str, rng: random.Random) -> None:
    """A profile (also copied into Redis, as persona extraction does), 100 user and 100 assistant facts."""
    from producers.wire import state
    from schemas.persona import Trait, UserProfile

    from .retrieval import _THINGS

    traits = [Trait(dimension=f"interest: {thing}", level=rng.choice(["low", "medium", "high"]),
                    evidence=f"Talks about {thing} often.") for thing in rng.sample(_THINGS, 8)]
    profile = UserProfile(user_id=user, summary="Curious, busy, close to family; plans a lot and likes the outdoors.",
                          traits=traits, updated_at=time.time())
    rt.persona.put_profile(profile)
    state.save_profile_copy(rt.redis, rt.keys.user(user), profile.model_dump_json())
    capacity = 100
    for kind, assistant, who in (("user", None, "The user"), ("assistant", rt.settings.assistant_id, "I")):
        added = rt.persona.add_facts(kind, user, assistant, _facts(rng, capacity + 10, who), {"source": "bench"},
                                     capacity)
        if added["added"] < capacity:
            raise RuntimeError(f"only {added['added']} {kind} facts stored for {user}; expected {capacity}")


def _prepare(rt: Any, targets: int, pages: int, rng: random.Random) -> list[str]:
    from .retrieval import build_store

    build_store(rt, targets, pages, rng)
    users = [f"bench-{u}" for u in range(targets)]
    for user in tqdm(users, desc="persona per target", unit="user", leave=False):
        _persona(rt, user, rng)
    return users


def _task_cost(rt: Any, users: Sequence[str], calls: int, rng: random.Random) -> dict[str, Any]:
    """The retriever's own time against one query embedding, both in this process, warm."""
    from .retrieval import _query

    retriever, embedder = rt.retriever, rt.embedder
    queries = [(rng.choice(users), _query(rng)) for _ in range(calls)]
    for user, query in queries[:30]:
        retriever.retrieve_for(user, query)
    embed, total, stages = [], [], {}
    for user, query in queries:
        t0 = time.perf_counter()
        embedder.embed_query(query)
        embed.append(time.perf_counter() - t0)
        context = retriever.retrieve_for(user, query)
        total.append(context.timings_ms["total"] / 1000)
        for name, ms in context.timings_ms.items():
            stages.setdefault(name, []).append(ms)
    sample = rt.retriever.retrieve_for(users[0], queries[0][1])
    return {"embed": summary(embed), "retrieve": summary(total),
            "stages_p50_ms": {k: percentile(v, 50) for k, v in stages.items()},
            "persona": {"profile": sample.user_profile is not None, "user_facts": len(sample.user_knowledge),
                        "assistant_facts": len(sample.assistant_knowledge), "pages": len(sample.pages)}}


def _check_store(settings: Any, rt: Any, published: dict[str, int]) -> int:
    """After the worker stopped: every turn published is a page in the store or in short-term memory."""
    from memoryos_workers.memory.pages import PAGES
    from memoryos_workers.vectorstore import open_store

    capacity = rt.settings.short_term_capacity
    store = open_store(settings)
    try:
        wrong = []
        for user, n in published.items():
            stored = store.count(PAGES, filter={"user_id": user})
            stm = rt.redis.llen(rt.keys.user(user).stm)
            if stored + stm != n or stm != min(n, capacity):
                wrong.append(f"{user}: {n} published, {stored} stored, {stm} in short-term")
    finally:
        store.close()
    if wrong:
        raise AssertionError("turns lost or doubled:\n" + "\n".join(wrong[:10]))
    return sum(published.values())

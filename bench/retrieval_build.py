"""Building the latency benchmark's store: users with a full short-term list, a profile, facts and pages
of generated everyday dialogue in segments, written straight into the embedded store (no LLM). Texts are
drawn from a fixed pool, so filling 100,000 pages costs the pool's embeddings, not the store size's."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

SEGMENT_PAGES = 10
DEFAULT_FACTS = 100

# --- generated everyday dialogue ------------------------------------------------------------------

_PEOPLE = ["my sister Ana", "my brother Tom", "my friend Priya", "my neighbour Jorge", "my boss Linda", "my mom",
           "my dad", "my colleague Wei", "my cousin Sofia", "my partner Sam", "my grandmother", "my roommate Kofi"]
_THINGS = ["the garden", "my marathon training", "the new apartment", "our trip to Lisbon", "the pottery class",
           "my guitar lessons", "the book club", "the kitchen renovation", "my job interview", "the dog shelter",
           "the camping weekend", "my Spanish course", "the wedding plans", "the photography project",
           "the bakery downtown", "my sourdough starter", "the chess tournament", "the hiking trail", "the concert",
           "the volunteer shift", "my back pain", "the vegetable patch", "the coding bootcamp", "the road trip"]
_ACTIONS = ["finally finished", "started planning", "had a long talk about", "spent the weekend on",
            "got frustrated with", "was really excited about", "took photos of", "signed up for",
            "could not stop thinking about", "made good progress on", "asked for advice about", "postponed"]
_WHEN = ["yesterday", "last weekend", "this morning", "two weeks ago", "on Friday evening", "last month",
         "after work", "during the holidays", "on my birthday", "before the storm"]
_FEELINGS = ["It felt great", "Honestly it was exhausting", "I am a bit nervous about it", "It made me so happy",
             "I learned a lot", "It was harder than I expected", "I think it went well", "I am proud of it"]
_REPLIES = ["That sounds wonderful, how did it go with {p}?", "I remember you mentioning {t} before, what changed?",
            "It is great that you keep working on {t}. What is the next step?",
            "Sounds like {p} really matters to you. Did you tell them how you feel?",
            "Take care of yourself. Maybe plan something relaxing after {t}.",
            "Nice! Would you like some tips for {t}?"]


def _turn(rng: random.Random) -> tuple[str, str]:
    person, thing = rng.choice(_PEOPLE), rng.choice(_THINGS)
    user = (f"{rng.choice(_WHEN).capitalize()} {person} and I {rng.choice(_ACTIONS)} {thing}. "
            f"{rng.choice(_FEELINGS)}, and we might {rng.choice(_ACTIONS)} {rng.choice(_THINGS)} next.")
    return user, rng.choice(_REPLIES).format(p=person, t=thing)


class _PooledText:
    """Turns drawn from a fixed pool, and an embedder that embeds each distinct text once: filling 10k or
    50k pages then costs the pool's embeddings, not the store size's. The store still holds one point per
    page with its own id, payload and BM25 vector; only some texts repeat across users."""

    def __init__(self, rng: random.Random, size: int = 3000) -> None:
        self.rng = rng
        self.turns = [_turn(rng) for _ in range(size)]
        self._vectors: dict[str, list[float]] = {}

    def turn(self) -> tuple[str, str]:
        return self.rng.choice(self.turns)

    def embedder(self, inner: Any) -> Any:
        cache = self._vectors

        class Cached:
            dim, fingerprint = inner.dim, inner.fingerprint

            def embed(self, texts: Sequence[str]) -> list[list[float]]:
                missing = list(dict.fromkeys(t for t in texts if t not in cache))
                for start in range(0, len(missing), 256):
                    chunk = missing[start : start + 256]
                    cache.update(zip(chunk, inner.embed(chunk), strict=True))
                return [cache[t] for t in texts]

            def embed_query(self, text: str) -> list[float]:
                return self.embed([text])[0]

        return Cached()


def _query(rng: random.Random) -> str:
    return rng.choice([
        f"What did I tell you about {rng.choice(_THINGS)}?",
        f"When did {rng.choice(_PEOPLE)} and I talk about {rng.choice(_THINGS)}?",
        f"How did I feel about {rng.choice(_THINGS)}?",
        f"Do you remember what happened with {rng.choice(_PEOPLE)}?",
    ])


_LIKES = ["loves", "is learning", "is worried about", "keeps talking about", "wants to finish", "is proud of",
          "spends Sundays on", "recommends", "gave up on", "is saving money for"]
_TRAITS = [("interest: outdoors", "hikes and camps most weekends"), ("interest: music", "takes guitar lessons"),
           ("communication: concise", "asks short direct questions"), ("family: close", "talks to relatives daily"),
           ("work: ambitious", "prepares carefully for job interviews"), ("health: active", "trains for a marathon"),
           ("hobby: cooking", "bakes sourdough bread"), ("mood: anxious", "often nervous before big events")]


def _facts(rng: random.Random, count: int) -> list[str]:
    """`count` distinct facts about a user (one of 2,880 texts, so their vectors come from a small pool)."""
    combos = rng.sample(range(len(_PEOPLE) * len(_LIKES) * len(_THINGS)), count)
    out = []
    for c in combos:
        person, rest = divmod(c, len(_LIKES) * len(_THINGS))
        like, thing = divmod(rest, len(_THINGS))
        subject = _PEOPLE[person].removeprefix("my ").capitalize()
        out.append(f"The user's {subject} {_LIKES[like]} {_THINGS[thing].removeprefix('my ')}.")
    return out


def _persona(rt: Any, users: int, facts: int, pool: _PooledText, rng: random.Random, prefix: str = "bench-",
             ) -> None:
    """For each user: a profile (a summary and the eight traits) and `facts` user facts, written through the
    persona store as the persona worker writes them."""
    from schemas.persona import Fact, Trait, UserProfile

    persona = rt.persona
    real = persona.embedder
    persona.embedder = pool.embedder(real)
    try:
        for u in tqdm(range(users), desc=f"build: profile and {facts} facts per user", unit="user"):
            user = f"{prefix}{u}"
            traits = [Trait(dimension=d, level=rng.choice(["low", "medium", "high"]), evidence=e) for d, e in _TRAITS]
            first, second = (t.removeprefix("my ") for t in rng.sample(_THINGS, 2))
            summary = f"Works on {first} and {second}; close to {rng.choice(_PEOPLE)}."
            persona.put_profile(UserProfile(user_id=user, traits=traits, summary=summary))
            if facts:
                persona.add_facts("user", user, None, [Fact(text=t, date="") for t in _facts(rng, facts)],
                                  {"source": "bench"})
    finally:
        persona.embedder = real


def _cold_caches() -> None:
    """Forget what the warm-up pass left in the retriever's caches of derived text (word stems, the BM25
    vectors of recent turns, the pages' quoted lines), so the timed pass pays for them as a user's first
    question would; the store's files stay read in (the warm-up's purpose)."""
    from memoryos_workers.embeddings.sparse import get_sparse_encoder
    from producers.context import render
    from schemas import persona, words

    getattr(words, "clear_stems_cache", lambda: None)()
    getattr(getattr(persona, "month", None), "cache_clear", lambda: None)()  # facts' month labels
    getattr(render.exchange, "cache_clear", lambda: None)()  # the pages' quoted lines
    getattr(get_sparse_encoder(), "forget_recent", lambda: None)()


def _rss_mib() -> dict[str, float]:
    """This process's resident memory now and at its peak (Linux /proc; else the peak from getrusage)."""
    out: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out["rss_mib" if line.startswith("VmRSS") else "peak_rss_mib"] = int(line.split()[1]) / 1024
    except OSError:
        import resource

        out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _fill(rt: Any, users: int, start: int, stop: int, pool: _PooledText, base: datetime, prefix: str = "bench-",
          ) -> None:
    """Pages start..stop-1 of every user (same count each), then their segments of SEGMENT_PAGES pages."""
    real = rt.embedder
    # Only while filling; retrieval embeds with the real model.
    rt.pages.embedder = rt.segments.embedder = pool.embedder(real)
    try:
        for u in tqdm(range(users), desc=f"build: pages {start + 1}-{stop} of each user", unit="user"):
            _fill_user(rt, f"{prefix}{u}", start, stop, pool, base)
    finally:
        rt.pages.embedder = rt.segments.embedder = real


def _fill_user(rt: Any, user: str, start: int, stop: int, pool: _PooledText, base: datetime) -> None:
    from memoryos_workers.memory.pages import PAGES, page_point_id
    from memoryos_workers.memory.segments import segment_point_id
    from schemas.memory import SegmentAssignment, SegmentPlan
    from schemas.turns import Page
    from schemas.words import text_stems

    pages = []
    for seq in range(start + 1, stop + 1):
        text, reply = pool.turn()
        pages.append(Page(seq=seq, user_id=user, turn_id=f"{user}-t{seq}", user_input=text, agent_response=reply,
                          timestamp=base + timedelta(hours=seq)))
    rt.pages.upsert(pages, batch_id=f"bench-{start}")
    assignments: list = []
    for first in range(0, len(pages), SEGMENT_PAGES):
        group = pages[first : first + SEGMENT_PAGES]
        key = f"seg-{group[0].seq}"
        assignments.append(SegmentAssignment(
            topic_index=len(assignments), segment_id=segment_point_id(user, key), merged=False, theme=key,
            summary_parts=[group[0].user_input],  # a pooled text, so its vector is cached
            keywords=["garden", "training", "trip"][: 1 + len(assignments) % 3], page_indices=[],
        ))
        ids = [page_point_id(user, p.turn_id) for p in group]
        chain = f"Chain about {group[0].user_input[:50]}"  # with its stems, as the mid-term pipeline writes it
        rt.store.set_payload(PAGES, ids, {"segment_id": assignments[-1].segment_id, "chain_summary": chain,
                                          "chain_stems": text_stems(chain)})
    rt.segments.write(user, None, SegmentPlan(assignments=assignments), {"source": "bench"})


def build_store(rt: Any, users: int, per_user: int, rng: random.Random, prefix: str = "bench-") -> _PooledText:
    """A full short-term list and `per_user` mid-term pages (in segments) for each of `users` users
    `<prefix>0`..; returns the text pool, whose `turn()` and `_query(rng)` give realistic queries."""
    _short_term(rt, users, rng, prefix)
    pool = _PooledText(rng)
    _fill(rt, users, 0, per_user, pool, datetime(2024, 1, 1, tzinfo=timezone.utc), prefix)
    return pool


def _short_term(rt: Any, users: int, rng: random.Random, prefix: str = "bench-") -> None:
    """A full short-term list per user (no overflow, so no task is sent)."""
    turns = []
    for u in range(users):
        for _ in range(rt.settings.short_term_capacity):
            text, reply = _turn(rng)
            turns.append({"user_id": f"{prefix}{u}", "user_input": text, "agent_response": reply})
    rt.publisher.publish_many(turns)

"""Which of the user's current facts the persona call is shown, so it can say which ones the new pages
replace, confirm or retire in the same call (no extra LLM call).

All of them while they are few; past MAX_SHOWN_FACTS, the ones nearest to the new pages (each page's
user text queries the facts; a fact ranks by its best score). Within a token share of the prompt, so the
pages keep most of the window. Each gets a short per-call id ("F1", ...): cheap for the model to copy and
an enum in the answer's schema.
"""

from __future__ import annotations

from collections.abc import Sequence

from memoryos_workers.memory.persona_store import PersonaStore
from schemas.persona import KnowledgeEntry, month
from schemas.turns import Page

MAX_SHOWN_FACTS = 40
CHARS_PER_TOKEN = 4
FACT_OVERHEAD_TOKENS = 12  # the id, "since" and JSON punctuation


def choose(store: PersonaStore, user_id: str, pages: Sequence[Page], token_room: int) -> dict[str, KnowledgeEntry]:
    """Short id -> fact, nearest first, as many as `token_room` holds."""
    facts = store.list("user", user_id)
    if len(facts) > MAX_SHOWN_FACTS:
        facts = _nearest(store, user_id, pages)
    shown: dict[str, KnowledgeEntry] = {}
    used = 0
    for entry in facts:
        cost = len(entry.text) // CHARS_PER_TOKEN + FACT_OVERHEAD_TOKENS
        if used + cost > token_room:
            break
        used += cost
        shown[f"F{len(shown) + 1}"] = entry
    return shown


def _nearest(store: PersonaStore, user_id: str, pages: Sequence[Page]) -> list[KnowledgeEntry]:
    texts = [p.user_input[:1000] for p in pages if p.user_input.strip()][:32]
    best: dict[str, tuple[float, KnowledgeEntry]] = {}
    for vector in store.embedder.embed(texts) if texts else []:
        for entry in store.search("user", user_id, None, vector, limit=8):
            score = entry.score or 0.0
            if entry.fact_id not in best or best[entry.fact_id][0] < score:
                best[entry.fact_id] = (score, entry)
    ranked = sorted(best.values(), key=lambda pair: -pair[0])
    return [entry for _, entry in ranked[:MAX_SHOWN_FACTS]]


def prompt_data(shown: dict[str, KnowledgeEntry]) -> list[dict[str, str]]:
    return [{"id": short, "fact": e.text, "since": month(e.valid_from)} for short, e in shown.items()]

"""The long-term persona a retrieval returns: the profile, the user facts nearest the query plus the most
recently confirmed ones, and the assistant's facts.

Split in two because only the second half needs the query's vector: `read_unembedded` (the profile and the
user's facts in creation order) runs while the query is embedded, so its store reads cost no time on the
request's path; `persona_for` then searches by the vector and builds entries only for the facts it keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memoryos_workers.memory.fact_recency import latest_and_replaced, latest_confirmed
from memoryos_workers.memory.persona_store import KNOWLEDGE, PersonaStore
from memoryos_workers.retrieval.fact_window import asks_about_past, fact_window
from memoryos_workers.vectorstore import Hit
from schemas.persona import KnowledgeEntry, UserProfile
from schemas.query import RetrievalRequest


@dataclass(frozen=True)
class Unembedded:
    """What the persona read needs no vector for."""

    profile: UserProfile | None
    # With history: all the user's facts (replaced ones too) in creation order; else at least the most
    # recently confirmed current ones, in creation order.
    facts: list[Hit]
    history: bool
    # Without history, the most recently confirmed facts do not depend on the search: their entries are
    # built here, beside the embedding.
    recent: list[KnowledgeEntry] | None = None
    # Whether the assistant has facts for this user at all (most users' assistants have none): when not, the
    # assistant's search after the embedding is skipped. None: not counted.
    assistant_facts: bool | None = None


def wants_history(request: RetrievalRequest) -> bool:
    """Replaced facts too: asked for, a time filter (facts that held in it), or a question about the past."""
    since, until = fact_window(request.filters, None)  # only whether there is a window; its zone comes later
    return request.fact_history or since is not None or until is not None or asks_about_past(request.query)


def assistant_of(request: RetrievalRequest, default: str) -> str:
    """Whose assistant facts a retrieval returns: the request's assistant, else its filter's, else the default."""
    return request.assistant_id or (request.filters.assistant_id if request.filters else None) or default


def read_unembedded(persona: PersonaStore, user_id: str, history: bool, limit: int,
                    assistant: str | None = None) -> Unembedded:
    """Without history only the most recently confirmed facts are needed, read through their index; with
    history, every fact (which ones a found fact replaced is known only once the search has run). With
    `assistant`, whether it has facts for this user is counted too."""
    latest = None if history else latest_confirmed(persona, "user", user_id, recent_count(limit))
    facts = persona.in_order("user", user_id, history=history) if latest is None else latest
    recent = None if history else persona.entries(latest_and_replaced(facts, recent_count(limit))[1])
    has_assistant = None
    if assistant is not None:
        flt = persona.facts_filter("assistant", user_id, assistant)
        has_assistant = persona.store.count(KNOWLEDGE, filter=flt) > 0
    return Unembedded(persona.get_profile(user_id), facts, history, recent, has_assistant)


def recent_count(limit: int) -> int:
    """How many of the most recently confirmed facts join the `limit` nearest ones."""
    return max(1, limit // 2)


def persona_for(persona: PersonaStore, read: Unembedded, request: RetrievalRequest, vector: Sequence[float],
                limit: int, assistant: str, zone: Any) -> tuple[UserProfile | None, list[KnowledgeEntry],
                                                                 list[KnowledgeEntry]]:
    """The profile and facts. User facts: the nearest to the query plus the most recently confirmed (a fact
    said last week matters whatever the words of the question), current ones only unless the request asks
    for history (then also the fact each one found replaced); with a time filter, only facts that held in
    it."""
    user_id, history = request.user_id, read.history
    user_facts = persona.search("user", user_id, None, vector, limit, history=history)
    found = {e.fact_id for e in user_facts}
    # "Where did I live before Porto?": the fact each one found replaced, found or not by the words.
    if read.recent is not None and not history:
        before, recent = [], read.recent
    else:
        before, recent = map(persona.entries, latest_and_replaced(read.facts, recent_count(limit),
                                                                  found if history else set()))
    seen = found | {e.fact_id for e in before}
    user_facts += before + [e for e in recent if e.fact_id not in seen]
    assistant_facts = (persona.search("assistant", user_id, assistant, vector, limit)
                       if read.assistant_facts is not False else [])
    since, until = fact_window(request.filters, zone)
    if since is not None or until is not None:
        user_facts = [e for e in user_facts if e.held_during(since, until)]
    return read.profile, user_facts, assistant_facts

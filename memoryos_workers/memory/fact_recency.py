"""Which of a user's facts were confirmed last, the few retrieval shows beside the facts nearest the query.

Read on every retrieval, so from payloads before any entry is built (`latest_and_replaced`), and through
the confirmed_at index instead of every fact of the user when the facts allow it (`latest_confirmed`).
"""

from __future__ import annotations

from collections.abc import Sequence

from memoryos_workers.memory.persona_store import KNOWLEDGE, PersonaStore, confirmed_time, fact_id_of, fact_status
from memoryos_workers.vectorstore import Hit
from memoryos_workers.vectorstore.base import sort_by_field

_FAR = 1e18  # a bound below any time or count: "the field is there"
_TIE = 1e-6  # confirmations closer than this (s) are one write's, so one time


def latest_and_replaced(hits: Sequence[Hit], latest: int, replaced_by: set[str] | frozenset[str] = frozenset(),
                        ) -> tuple[list[Hit], list[Hit]]:
    """Of a user's facts in creation order (`PersonaStore.in_order`): the facts some fact of `replaced_by`
    replaced (not themselves in it), in that order, and the `latest` current facts most recently confirmed
    (ties: the earlier created first). Pure, on payloads: building an entry costs more than reading it."""
    before = [h for h in hits if replaced_by and h.payload.get("superseded_by") in replaced_by
              and fact_id_of(h) not in replaced_by]
    current = [h for h in hits if fact_status(h.payload) == "current"]
    return before, sorted(current, key=lambda h: -confirmed_time(h.payload))[:latest]


def latest_confirmed(persona: PersonaStore, kind: str, user_id: str, latest: int) -> list[Hit] | None:
    """The `latest` current facts most recently confirmed, ties the earlier created first: what
    `latest_and_replaced(in_order(...), latest)` keeps, read through the confirmed_at index (the newest,
    then every fact tied with the last of them) instead of all the user's facts. None when a current fact
    lacks confirmed_at or created_ms (written before they were): only reading them all orders those."""
    persona.ensure()
    flt = persona.facts_filter(kind, user_id, None)
    stamped = {**flt, "confirmed_at": {"gte": -_FAR}, "created_ms": {"gte": -_FAR}}
    if persona.store.count(KNOWLEDGE, filter=flt) != persona.store.count(KNOWLEDGE, filter=stamped):
        return None
    top = persona.store.scroll(KNOWLEDGE, filter=flt, order_by="confirmed_at", descending=True, limit=latest)
    if len(top) == latest:
        # Ties: one write confirms all its facts at one `now`. A window, not equality: the float read back
        # from a payload can differ from the indexed one in the last bit (about 2e-7 s at today's times).
        edge = top[-1].payload["confirmed_at"]
        window = {"gte": edge - _TIE, "lte": edge + _TIE}
        tied = persona.store.scroll(KNOWLEDGE, filter={**flt, "confirmed_at": window}, order_by="created_ms",
                                    limit=latest)
        top = [h for h in top if h.payload["confirmed_at"] > edge + _TIE] + tied
    return latest_and_replaced(sort_by_field(top, "created_ms"), latest)[1]

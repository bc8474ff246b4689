"""Text work the fitting will ask for, done beside the query's embedding so the request's thread finds it
cached.

The fitting renders a line for every turn of the recent dialogue and for every candidate page (its quoted
exchange and its time label), parses each candidate's stored timestamp and compares the query's words
with the profile's traits. None of it needs the query's vector, and all of it goes through caches keyed by
the text (producers/context/render.py `exchange` and `time_label`, parts.py `parse_time`, schemas/words.py
`content_stems`). Most pages a retrieval keeps are in the BM25 list the early thread already read with
their payloads (retrieval/early.py), so filling those caches there takes this work off the request's path;
what comes out is the same either way, since each cache returns what its function computes.
"""

from __future__ import annotations

from collections.abc import Sequence

from memoryos_workers.vectorstore import Hit
from producers.context.parts import PageCandidate
from producers.context.render import dialogue_line, exchange, time_label
from schemas.persona import UserProfile
from schemas.turns import Page
from schemas.words import content_stems, trait_text


def warm(query: str, turns: Sequence[Page], pages: Sequence[Hit], profile: UserProfile | None) -> None:
    """Fills the caches the fitting reads for the query, these recent turns, these stored pages (hits with
    payloads) and the profile."""
    content_stems(query)
    for turn in turns:
        dialogue_line(turn)
    for hit in pages:
        p = hit.payload
        stamp = p.get("timestamp")
        if stamp is None:
            continue
        time_label(PageCandidate.parse_time(stamp))
        exchange(p.get("user_input", ""), p.get("agent_response", ""))
    if profile is not None:
        for trait in profile.traits:
            content_stems(trait_text(trait.dimension, trait.evidence))

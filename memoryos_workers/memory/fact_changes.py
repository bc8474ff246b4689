"""What changes a user's facts, besides extraction adding them: the persona call's supersessions and
retirements, and a person's corrections through the memory interface.

A fact is replaced or retired only when named: by the LLM among the facts it was shown (never by
similarity alone), or by a person. A pinned fact is a person's word: the LLM cannot replace or retire it.
Nothing is deleted here except on a person's explicit delete; a replaced fact stays as history.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from itertools import pairwise

from memoryos_workers.memory.persona_store import PersonaStore
from schemas.persona import Fact, KnowledgeEntry

# The most shown facts one new fact may replace, and one call may retire. A model that names more is not
# saying which fact changed: the real 0.5B model (bench/real_llm_check.py) put every id it was shown into
# one fact's `supersedes`. A real change replaces one fact, rarely two ("moved to Berlin" ends "lives in
# Paris" and "plans to move"), so a longer list is ignored as a whole and counted as `ignored`.
MAX_NAMED = 2


def _named(ids: Sequence[str], unless: Sequence[str] = ()) -> tuple[list[str], int]:
    """The ids a link list may act on, and how many it named in vain. An id named both as superseded and as
    confirmed says nothing either way."""
    named = [short for short in dict.fromkeys(ids) if short not in unless]
    return (named, 0) if len(named) <= MAX_NAMED else ([], len(named))


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.lower().split()).rstrip(".!") == " ".join(b.lower().split()).rstrip(".!")


def replaces(fact: Fact, shown: Mapping[str, KnowledgeEntry], kind: str = "user") -> tuple[list[str], int]:
    """The shown facts (short ids) a new fact replaces, exactly as `apply_links` ends them, and how many it
    named in vain. The extraction keeps the new fact apart from these when it looks for a duplicate to
    confirm, so the two must agree: a fact kept apart but not ended stays current beside its twin (e.g. a
    shown fact restated word for word and named both superseded and confirmed, or among every shown id, as
    the 0.5B model names ids). A shown fact said again the same is confirmed, not replaced; a pinned one or
    one of another kind is not replaced."""
    named, vain = _named(fact.supersedes, unless=fact.confirms)
    out = []
    for short in named:
        old = shown.get(short)
        if old is not None and old.kind != kind:
            vain += 1
        elif old is not None and not old.pinned and not _same_text(old.text, fact.text):
            out.append(short)
    return out, vain


class FactNotFound(ValueError):
    """No fact with this id among the user's facts (or it belongs to another user)."""


def apply_links(
    store: PersonaStore,
    facts: Sequence[Fact],
    new_ids: Sequence[str],
    starts: Sequence[float],
    shown: Mapping[str, KnowledgeEntry],
    retired: Sequence[str],
    retired_at: float,
    kind: str = "user",
) -> dict[str, int]:
    """The persona answer's links: each new fact's `supersedes` and `confirms`, and `retired`, all as the
    call's short ids of `shown` facts (anything else is ignored). `starts`: when each new fact became true
    (the replaced fact held until then). `kind`: the new facts' kind; a shown fact of another kind (a user
    fact named by an assistant fact, or the reverse) is not linked and counts as ignored. Already-replaced
    facts stay as they were, so a re-delivered call supersedes nothing twice.

    Facts carry no subject or category field, so "the same subject" is not checked here: the subject is in
    the text ("Lea lives in Berlin"), and telling "The user" from "Lea" from the text alone would drop real
    changes. A new fact cannot name another new fact of the same call (the enum holds shown facts only), but
    when several new facts of one call name the same shown fact as replaced ("moved to Berlin", later "moved
    on to Vancouver"), they are successive values of one thing: the shown fact ends at the earliest, and each
    of them at the next one's start (a chain, in the order they became true)."""
    superseded = confirmed = ended = ignored = 0
    now = time.time()
    successors: dict[str, list[tuple[float, str]]] = {}

    def linkable(short: str) -> KnowledgeEntry | None:
        nonlocal ignored
        old = shown.get(short)
        if old is not None and old.kind != kind:
            ignored += 1
            return None
        return old

    for fact, new_id, start in zip(facts, new_ids, starts, strict=True):
        if not new_id:
            continue
        replaced, vain = replaces(fact, shown, kind)
        ignored += vain
        for short in replaced:
            if shown[short].fact_id != new_id:
                successors.setdefault(short, []).append((start, new_id))
        for short in dict.fromkeys(fact.confirms):
            old = linkable(short)
            if old is not None and old.fact_id != new_id:
                store.mark(old, {"confirmed_at": now}, at=now, by="llm", action="confirmed")
                confirmed += 1
    for short, chain in successors.items():
        superseded += _supersede_in_order(store, shown[short], chain)
    ended_ids, vain = _named(retired)
    ignored += vain
    for short in ended_ids:
        old = linkable(short)
        if old is not None and not old.pinned:
            ended += store.end(old, at=retired_at, by="llm", action="retired")
    return {"superseded": superseded, "confirmed": confirmed, "retired": ended, "ignored": ignored}


def _supersede_in_order(store: PersonaStore, old: KnowledgeEntry, chain: Sequence[tuple[float, str]]) -> int:
    """`old` replaced by the first of `chain` (start, new fact_id) to become true, each of those by the next.
    How many facts were ended (a re-delivered call ends none twice)."""
    order = sorted(dict((new_id, start) for start, new_id in chain).items(), key=lambda pair: pair[1])
    count = int(store.end(old, at=order[0][1], by="llm", superseded_by=order[0][0]))
    if len(order) > 1:
        found = {e.fact_id: e for e in store.find(old.kind, old.user_id, [new_id for new_id, _ in order[:-1]])}
        for (earlier, _), (later, start) in pairwise(order):
            if earlier in found:
                count += store.end(found[earlier], at=start, by="llm", superseded_by=later)
    return count


def one(store: PersonaStore, user_id: str, fact_id: str) -> KnowledgeEntry:
    found = store.find("user", user_id, [fact_id])
    if not found:
        raise FactNotFound(f"fact_id: no fact {fact_id!r} for this user")
    return found[0]


def add(store: PersonaStore, user_id: str, text: str, *, pinned: bool = False, by: str) -> KnowledgeEntry:
    """A person's fact, valid from now (or the date it states)."""
    out = store.add_facts("user", user_id, None, [Fact(text=text, date="")], {}, by=by)
    entry = one(store, user_id, out["ids"][0])
    if pinned and not entry.pinned:
        entry = pin(store, user_id, entry.fact_id, True, by=by)
    return entry


def correct(store: PersonaStore, user_id: str, fact_id: str, *, text: str | None = None,
            pinned: bool | None = None, by: str) -> KnowledgeEntry:
    """A person's correction: new text replaces the fact (the old one held until now, marked corrected by
    `by`); the new fact keeps the old one's pin unless `pinned` says otherwise. Only a current fact can be
    corrected."""
    old = one(store, user_id, fact_id)
    if not old.current:
        raise ValueError(f"fact_id: {fact_id!r} was already replaced; correct the fact that replaced it")
    if text is None or " ".join(text.split()) == " ".join(old.text.split()):
        return old if pinned is None or pinned == old.pinned else pin(store, user_id, fact_id, pinned, by=by)
    out = store.add_facts("user", user_id, None, [Fact(text=text, date="")], {}, by=by, keep_apart=[[fact_id]])
    new_id = out["ids"][0]
    store.end(old, at=time.time(), by=by, superseded_by=new_id, action="corrected")
    keep = old.pinned if pinned is None else pinned
    entry = one(store, user_id, new_id)
    return pin(store, user_id, new_id, keep, by=by) if keep != entry.pinned else entry


def pin(store: PersonaStore, user_id: str, fact_id: str, pinned: bool, *, by: str) -> KnowledgeEntry:
    entry = one(store, user_id, fact_id)
    if entry.pinned != pinned:
        now = time.time()
        store.mark(entry, {"pinned": pinned}, at=now, by=by, action="pinned" if pinned else "unpinned")
    return one(store, user_id, fact_id)


def delete(store: PersonaStore, user_id: str, fact_id: str, *, by: str) -> KnowledgeEntry:
    """Removes the fact and nothing else (the fact it replaced, if any, stays in history); who deleted it
    and when is kept, without its text, for export."""
    entry = one(store, user_id, fact_id)
    store.delete_fact(entry, by=by)
    return entry

"""Long-term persona in the vector store: one profile point per user, and knowledge entries.

User facts belong to a user. A fact carries its time (valid_from; once replaced valid_until and
superseded_by) and its changes; a replaced or retired fact moves to the history owner ("was:" + owner), so
every search of current facts is one owner filter, older payloads (no such fields) read as current, and
history never counts against the capacity of current facts. Forget deletes both.

 Assistant facts belong to (assistant_id, user_id) and record the user
they came from; only with MEMORYOS_SHARE_ASSISTANT_KNOWLEDGE do they reach the assistant's other
users, because facts drawn from one user's dialogue must not leak to another by default.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from memoryos_workers.embeddings.base import TextEmbedder
from memoryos_workers.memory.collections import CollectionOwner
from memoryos_workers.vectorstore import Hit, PointIn, VectorStore
from schemas.persona import Fact, FactChange, KnowledgeEntry, UserProfile
from schemas.settings import Settings
from schemas.turns import SCHEMA_VERSION
from schemas.words import remember_text_stems, text_stems, trait_text

PROFILES = "profiles"
KNOWLEDGE = "knowledge"
SHARED = "*"
_NAMESPACE = uuid.UUID("a3c9e1f4-7b2d-4e8a-9f60-1c2d3e4f5a6b")


def profile_point_id(user_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"profile\x1f{user_id}"))


HISTORY = "was:"
DELETED = "deleted:"


def fact_point_id(kind: str, owner: str, text: str, salt: str = "") -> str:
    """The same fact for the same owner always lands on the same point (a salt when a replaced fact with this
    text is already there: "moved back to Paris" must not overwrite the history of the first stay)."""
    tail = f"\x1f{salt}" if salt else ""
    return str(uuid.uuid5(_NAMESPACE, f"fact\x1f{kind}\x1f{owner}\x1f{' '.join(text.lower().split())}{tail}"))


def short_fact_id(point_id: str) -> str:
    """The fact's handle for people and the LLM: 10 hex digits of its point id (stable, unique per user)."""
    return "f" + point_id.replace("-", "")[:10]


def fact_id_of(hit: Hit) -> str:
    return hit.payload.get("fact_id") or short_fact_id(hit.id)


def fact_status(p: dict[str, Any]) -> str:
    return p.get("status", "superseded" if str(p.get("owner", "")).startswith(HISTORY) else "current")


def confirmed_time(p: dict[str, Any]) -> float:
    """When the fact was last said or confirmed (older payloads: their last update, else creation)."""
    return p.get("confirmed_at", p.get("updated_at", p.get("created_at", 0.0)))


def _entry(hit: Hit) -> KnowledgeEntry:
    p = hit.payload
    created = p.get("created_at", 0.0)
    remember_text_stems(p.get("text_stems"), p["text"])  # the context fitting compares the fact's words
    return KnowledgeEntry(
        entry_id=hit.id,
        kind=p["kind"],
        text=p["text"],
        date=p.get("date", ""),
        user_id=p["user_id"],
        assistant_id=p.get("assistant_id"),
        created_at=created,
        updated_at=p.get("updated_at", 0.0),
        score=hit.score or None,
        fact_id=fact_id_of(hit),
        status=fact_status(p),
        valid_from=p.get("valid_from", created or None),
        valid_until=p.get("valid_until"),
        superseded_by=p.get("superseded_by"),
        source_turns=p.get("source_turns") or [],
        recorded_at=p.get("recorded_at", created),
        confirmed_at=confirmed_time(p),
        pinned=bool(p.get("pinned", False)),
        origin=p.get("origin", "llm"),
        origin_by=p.get("origin_by"),
        changes=p.get("changes") or [],
    )


def _stemmed(profile: UserProfile) -> list[str]:
    """The texts of a profile whose stems it keeps, in order: its summary, then each trait's."""
    return [profile.summary, *(trait_text(t.dimension, t.evidence) for t in profile.traits)]


def stated_time(date: str) -> float | None:
    """A date the dialogue states ("2023", "2023-05", "2023-05-14", or a full ISO time) as Unix time (UTC)."""
    text = (date or "").strip()
    for fmt, size in (("%Y-%m-%d", 10), ("%Y-%m", 7), ("%Y", 4)):
        try:
            day = datetime.strptime(text[:size], fmt) if len(text) >= size else None
        except ValueError:
            continue
        if day is not None and 1900 <= day.year <= 2200:
            return day.replace(tzinfo=UTC).timestamp()
    return None


def profile_text(profile: UserProfile) -> str:
    return profile.render() or profile.user_id


def profile_vector_text(payload: dict[str, Any]) -> str:
    """What a stored profile's vector was made from (for re-embedding)."""
    return profile_text(UserProfile.model_validate(payload["profile"]))


def fact_vector_text(payload: dict[str, Any]) -> str:
    return str(payload["text"]) or "(deleted)"  # a tombstone keeps no text


class PersonaStore(CollectionOwner):
    def __init__(self, store: VectorStore, embedder: TextEmbedder, settings: Settings) -> None:
        super().__init__(store, embedder)
        self.settings = settings

    def _create(self) -> None:
        dim, model = self.embedder.dim, self.embedder.fingerprint
        self.store.ensure_collection(PROFILES, dim=dim, tenant_fields=("user_id",), model=model)
        self.store.ensure_collection(
            KNOWLEDGE,
            dim=dim,
            model=model,
            tenant_fields=("user_id",),
            keyword_fields=("kind", "assistant_id", "scope_user", "owner"),
            integer_fields=("created_ms",),
            float_fields=("confirmed_at",),  # retrieval's recency read (`latest_confirmed`)
        )

    # -- owners ----------------------------------------------------------------------------------
    def owner(self, kind: str, user_id: str, assistant_id: str | None) -> str:
        if kind == "user":
            return f"user:{user_id}"
        scope = SHARED if self.settings.share_assistant_knowledge else user_id
        return f"assistant:{assistant_id or self.settings.assistant_id}:{scope}"

    def facts_filter(self, kind: str, user_id: str, assistant_id: str | None, history: bool = False,
                     ) -> dict[str, Any]:
        """The reader's current facts only, or (history) current and replaced ones."""
        if kind == "user":
            owners = [self.owner("user", user_id, None)]
        else:
            assistant = assistant_id or self.settings.assistant_id
            owners = [f"assistant:{assistant}:{user_id}"]
            if self.settings.share_assistant_knowledge:
                owners.append(f"assistant:{assistant}:{SHARED}")
        if history:
            owners += [HISTORY + o for o in owners]
        return {"kind": kind, "owner": owners if len(owners) > 1 else owners[0]}

    _filter = facts_filter  # its name before retrieval read it from outside (fact_recency.py)

    # -- profile ---------------------------------------------------------------------------------
    def get_profile(self, user_id: str) -> UserProfile | None:
        self.ensure()
        hits = self.store.get(PROFILES, [profile_point_id(user_id)])
        if not hits:
            return None
        profile = UserProfile.model_validate(hits[0].payload["profile"])
        for stored, text in zip(hits[0].payload.get("stems") or [], _stemmed(profile), strict=False):
            remember_text_stems(stored, text)  # the context fitting compares these words
        return profile

    def put_profile(self, profile: UserProfile) -> None:
        self.ensure()
        vector = self.embedder.embed([profile_text(profile)])[0]  # background work: the batch session
        payload = {
            "user_id": profile.user_id,
            "profile": profile.model_dump(mode="json"),
            # The words of its summary and traits, computed once here instead of by every retrieval's fitting.
            "stems": [text_stems(text) for text in _stemmed(profile)],
            "schema_version": SCHEMA_VERSION,
            "embedding_model": self.embedder.fingerprint,
        }
        self.store.upsert(PROFILES, [PointIn(id=profile_point_id(profile.user_id), vector=vector, payload=payload)])

    # -- knowledge -------------------------------------------------------------------------------
    def add_facts(
        self,
        kind: str,
        user_id: str,
        assistant_id: str | None,
        facts: Sequence[Fact],
        provenance: dict[str, Any],
        capacity: int | None = None,
        *,
        times: Sequence[tuple[float | None, list[str]]] | None = None,
        by: str = "llm",
        keep_apart: Sequence[Sequence[str]] | None = None,
    ) -> dict[str, Any]:
        """Adds facts; a near-duplicate of a stored one confirms it instead, unless it is a fact the new one
        replaces (`keep_apart`: fact ids per fact; "lives in Berlin" is close to "lives in Paris"). `times`:
        per fact, when it became true (a date the fact states wins) and its source turns. `by`: "llm", or the
        person or key adding it. Oldest out past capacity (the user's own, when given; the deployment's
        otherwise). Returns counts and `ids`, the fact_id each fact landed on (added or confirmed)."""
        self.ensure()
        kept = [(i, f) for i, f in enumerate(facts) if f.text.strip()]
        if not kept:
            return {"added": 0, "refreshed": 0, "evicted": 0, "ids": [""] * len(facts)}
        owner = self.owner(kind, user_id, assistant_id)
        flt = {"kind": kind, "owner": owner}
        vectors = self.embedder.embed([f.text for _, f in kept])
        now = time.time()
        added = refreshed = 0
        ids = [""] * len(facts)
        for (i, fact), vector in zip(kept, vectors, strict=True):
            apart = set(keep_apart[i]) if keep_apart else set()
            near = self.store.query(KNOWLEDGE, vector=vector, filter=flt, limit=len(apart) + 1)
            near = [h for h in near if _entry(h).fact_id not in apart]
            if near and near[0].score >= self.settings.knowledge_duplicate_threshold:
                old = _entry(near[0])
                self.store.set_payload(KNOWLEDGE, [near[0].id], {
                    "updated_at": now, "confirmed_at": now, "date": fact.date or old.date})
                ids[i] = old.fact_id
                refreshed += 1
                continue
            valid_from, turns = times[i] if times else (None, [])
            point_id = fact_point_id(kind, owner, fact.text)
            if self.store.get(KNOWLEDGE, [point_id]):  # a replaced fact with this text: keep its history
                point_id = fact_point_id(kind, owner, fact.text, salt=repr(now))
            fact_id = short_fact_id(point_id)
            person = by != "llm"
            payload = {
                "kind": kind,
                "owner": owner,
                "text": fact.text.strip(),
                "text_stems": text_stems(fact.text.strip()),  # read by every retrieval's context fitting
                "date": fact.date,
                "user_id": user_id,
                "assistant_id": assistant_id if kind == "assistant" else None,
                "scope_user": owner.rsplit(":", 1)[-1] if kind == "assistant" else user_id,
                "created_at": now,
                "created_ms": int(now * 1000) + added,
                "updated_at": now,
                "schema_version": SCHEMA_VERSION,
                "embedding_model": self.embedder.fingerprint,
                **provenance,
                "fact_id": fact_id,
                "status": "current",
                "valid_from": stated_time(fact.date) or valid_from or now,
                "valid_until": None,
                "superseded_by": None,
                "source_turns": list(turns),
                "recorded_at": now,
                "confirmed_at": now,
                "pinned": False,
                "origin": "person" if person else "llm",
                "origin_by": by if person else None,
                "changes": [_change(now, "added" if person else "extracted", by)],
            }
            self.store.upsert(KNOWLEDGE, [PointIn(id=point_id, vector=vector, payload=payload)])
            ids[i] = fact_id
            added += 1
        evicted = self._trim(flt, capacity or self.settings.long_term_knowledge_capacity)
        self._trim({"kind": kind, "owner": HISTORY + owner}, capacity or self.settings.long_term_knowledge_capacity)
        return {"added": added, "refreshed": refreshed, "evicted": evicted, "ids": ids}

    # -- changes to one fact (fact_changes.py decides which; these write them) --------------------------
    def find(self, kind: str, user_id: str, fact_ids: Sequence[str], assistant_id: str | None = None,
             ) -> list[KnowledgeEntry]:
        """The reader's facts (current or replaced) with these ids. A scan of the reader's facts (at most twice
        the capacity), not a fact_id filter: payloads older than fact_id carry none and are found too."""
        self.ensure()
        wanted = set(fact_ids)
        if not wanted:
            return []
        hits = self.store.scroll(KNOWLEDGE, filter=self.facts_filter(kind, user_id, assistant_id, history=True))
        return [e for e in map(_entry, hits) if e.fact_id in wanted]

    def end(self, entry: KnowledgeEntry, *, at: float, by: str, superseded_by: str | None = None,
            action: str = "superseded") -> bool:
        """Moves a current fact to history: held until `at`, replaced by `superseded_by` (None: retired).
        A fact already replaced stays as it was (a re-delivered task supersedes nothing twice)."""
        hits = self.store.get(KNOWLEDGE, [entry.entry_id])
        if not hits or str(hits[0].payload.get("owner", "")).startswith(HISTORY):
            return False
        payload = hits[0].payload
        status = "retired" if superseded_by is None else "superseded"
        changes = [*(payload.get("changes") or []), _change(at, action, by, superseded_by or "")]
        self.store.set_payload(KNOWLEDGE, [entry.entry_id], {
            "owner": HISTORY + str(payload["owner"]), "status": status, "superseded_by": superseded_by,
            "valid_until": max(at, float(payload.get("valid_from") or 0.0)), "updated_at": time.time(),
            "changes": changes})
        return True

    def mark(self, entry: KnowledgeEntry, fields: dict[str, Any], *, at: float, by: str, action: str) -> None:
        """Sets fields of one fact and records the change (pin, unpin, confirm)."""
        hits = self.store.get(KNOWLEDGE, [entry.entry_id])
        if hits:
            changes = [*(hits[0].payload.get("changes") or []), _change(at, action, by)]
            self.store.set_payload(KNOWLEDGE, [entry.entry_id], {**fields, "updated_at": at, "changes": changes})

    def delete_fact(self, entry: KnowledgeEntry, *, by: str) -> None:
        """A person's delete: the text and its vector go; a tombstone (under the "deleted:" owner, which no
        read of facts lists) keeps who deleted it and when, for export, until forget or the capacity."""
        hits = self.store.get(KNOWLEDGE, [entry.entry_id])
        if not hits:
            return
        payload, now = hits[0].payload, time.time()
        owner = str(payload["owner"]).removeprefix(HISTORY)
        tombstone = {k: payload.get(k) for k in ("kind", "user_id", "assistant_id", "scope_user", "created_at",
                                                 "created_ms", "fact_id", "valid_from", "valid_until")}
        tombstone.update({"owner": DELETED + owner, "text": "", "status": "deleted", "updated_at": now,
                          "fact_id": entry.fact_id, "schema_version": SCHEMA_VERSION,
                          "embedding_model": self.embedder.fingerprint,
                          "changes": [*(payload.get("changes") or []), _change(now, "deleted", by)]})
        vector = self.embedder.embed(["(deleted)"])[0]
        self.store.upsert(KNOWLEDGE, [PointIn(id=entry.entry_id, vector=vector, payload=tombstone)])
        self._trim({"kind": payload["kind"], "owner": DELETED + owner}, self.settings.long_term_knowledge_capacity)

    def _trim(self, flt: dict[str, Any], capacity: int) -> int:
        """FIFO by creation time, as the paper's knowledge queues (capacity 100 each)."""
        total = self.store.count(KNOWLEDGE, filter=flt)
        if total <= capacity:
            return 0
        oldest = self.store.scroll(KNOWLEDGE, filter=flt, order_by="created_ms", limit=total - capacity)
        self.store.delete_ids(KNOWLEDGE, [h.id for h in oldest])
        return len(oldest)

    def search(
        self, kind: str, user_id: str, assistant_id: str | None, vector: Sequence[float], limit: int,
        history: bool = False,
    ) -> list[KnowledgeEntry]:
        self.ensure()
        flt = self.facts_filter(kind, user_id, assistant_id, history)
        hits = self.store.query(KNOWLEDGE, vector=vector, filter=flt, limit=limit)
        return [_entry(h) for h in hits]

    def list(self, kind: str, user_id: str, assistant_id: str | None = None, history: bool = False,
             ) -> list[KnowledgeEntry]:
        """Current facts oldest first; with history, replaced ones too."""
        self.ensure()
        hits = self.store.scroll(KNOWLEDGE, filter=self.facts_filter(kind, user_id, assistant_id, history),
                                 order_by="created_ms")
        return [_entry(h) for h in hits]

    def in_order(self, kind: str, user_id: str, history: bool = False) -> list[Hit]:
        """`list` as stored points, before any entry is built: retrieval turns only the few facts it keeps
        into entries (memory/fact_recency.py, `entries`)."""
        self.ensure()
        return self.store.scroll(KNOWLEDGE, filter=self.facts_filter(kind, user_id, None, history),
                                 order_by="created_ms")

    @staticmethod
    def entries(hits: Sequence[Hit]) -> list[KnowledgeEntry]:
        return [_entry(h) for h in hits]

    def shared_assistant_facts(self, assistant_id: str) -> list[KnowledgeEntry]:
        """An assistant's facts shared across its users (MEMORYOS_SHARE_ASSISTANT_KNOWLEDGE)."""
        self.ensure()
        flt = {"kind": "assistant", "owner": f"assistant:{assistant_id}:{SHARED}"}
        return [_entry(h) for h in self.store.scroll(KNOWLEDGE, filter=flt, order_by="created_ms")]

    def facts(self, kind: str, user_id: str | None, assistant_id: str) -> list[KnowledgeEntry]:
        """What a reader may see, oldest first: the user's facts; an assistant's facts for this user (its own
        scope plus shared ones); without a user, the shared ones only (one user's facts never reach another)."""
        if kind == "user" and user_id is not None:
            return self.list("user", user_id)
        if kind == "assistant":
            return self.shared_assistant_facts(assistant_id) if user_id is None else self.list(
                "assistant", user_id, assistant_id)
        raise ValueError(f"kind: must be user or assistant, not {kind!r}")

    def drawn_from(self, user_id: str, kind: str) -> list[Hit]:
        """Facts drawn from this user's dialogue, whoever they are scoped to (for export)."""
        self.ensure()
        return self.store.scroll(KNOWLEDGE, filter={"user_id": user_id, "kind": kind}, order_by="created_ms")

    @staticmethod
    def timeline(hit: Hit) -> dict[str, Any]:
        """A stored fact's time, provenance and changes, as exported (older payloads: as they read)."""
        return _entry(hit).model_dump(mode="json", include={
            "fact_id", "status", "valid_from", "valid_until", "superseded_by", "source_turns", "recorded_at",
            "confirmed_at", "pinned", "origin", "origin_by", "changes"})

    def delete_user(self, user_id: str) -> dict[str, int]:
        """Every fact drawn from the user and their profile; counts of what was removed."""
        self.ensure()
        removed = {
            "facts": self.store.delete(KNOWLEDGE, filter={"user_id": user_id}),
            "profile": len(self.store.get(PROFILES, [profile_point_id(user_id)])),
        }
        self.store.delete_ids(PROFILES, [profile_point_id(user_id)])
        return removed


def _change(at: float, action: str, by: str, detail: str = "") -> dict[str, Any]:
    return FactChange(at=at, action=action, by=by, detail=detail).model_dump(mode="json")  # type: ignore[arg-type]

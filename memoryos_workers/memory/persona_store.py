"""Long-term persona in the vector store: one profile point per user, and knowledge entries.

User facts belong to a user. Assistant facts belong to (assistant_id, user_id) and record the user
they came from; only with MEMORYOS_SHARE_ASSISTANT_KNOWLEDGE do they reach the assistant's other
users, because facts drawn from one user's dialogue must not leak to another by default.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from memoryos_workers.embeddings.base import TextEmbedder
from memoryos_workers.memory.collections import CollectionOwner
from memoryos_workers.vectorstore import Hit, PointIn, VectorStore
from schemas.persona import Fact, KnowledgeEntry, UserProfile
from schemas.settings import Settings
from schemas.turns import SCHEMA_VERSION

PROFILES = "profiles"
KNOWLEDGE = "knowledge"
SHARED = "*"
_NAMESPACE = uuid.UUID("a3c9e1f4-7b2d-4e8a-9f60-1c2d3e4f5a6b")


def profile_point_id(user_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"profile\x1f{user_id}"))


def fact_point_id(kind: str, owner: str, text: str) -> str:
    """The same fact for the same owner always lands on the same point."""
    return str(uuid.uuid5(_NAMESPACE, f"fact\x1f{kind}\x1f{owner}\x1f{' '.join(text.lower().split())}"))


def _entry(hit: Hit) -> KnowledgeEntry:
    p = hit.payload
    return KnowledgeEntry(
        entry_id=hit.id,
        kind=p["kind"],
        text=p["text"],
        date=p.get("date", ""),
        user_id=p["user_id"],
        assistant_id=p.get("assistant_id"),
        created_at=p.get("created_at", 0.0),
        updated_at=p.get("updated_at", 0.0),
        score=hit.score or None,
    )


def profile_text(profile: UserProfile) -> str:
    return profile.render() or profile.user_id


def profile_vector_text(payload: dict[str, Any]) -> str:
    """What a stored profile's vector was made from (for re-embedding)."""
    return profile_text(UserProfile.model_validate(payload["profile"]))


def fact_vector_text(payload: dict[str, Any]) -> str:
    return str(payload["text"])


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
        )

    # -- owners ----------------------------------------------------------------------------------
    def owner(self, kind: str, user_id: str, assistant_id: str | None) -> str:
        if kind == "user":
            return f"user:{user_id}"
        scope = SHARED if self.settings.share_assistant_knowledge else user_id
        return f"assistant:{assistant_id or self.settings.assistant_id}:{scope}"

    def _filter(self, kind: str, user_id: str, assistant_id: str | None) -> dict[str, Any]:
        if kind == "user":
            return {"kind": "user", "owner": self.owner("user", user_id, None)}
        assistant = assistant_id or self.settings.assistant_id
        owners = [f"assistant:{assistant}:{user_id}"]
        if self.settings.share_assistant_knowledge:
            owners.append(f"assistant:{assistant}:{SHARED}")
        return {"kind": "assistant", "owner": owners}

    # -- profile ---------------------------------------------------------------------------------
    def get_profile(self, user_id: str) -> UserProfile | None:
        self.ensure()
        hits = self.store.get(PROFILES, [profile_point_id(user_id)])
        return UserProfile.model_validate(hits[0].payload["profile"]) if hits else None

    def put_profile(self, profile: UserProfile) -> None:
        self.ensure()
        vector = self.embedder.embed([profile_text(profile)])[0]  # background work: the batch session
        payload = {
            "user_id": profile.user_id,
            "profile": profile.model_dump(mode="json"),
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
    ) -> dict[str, int]:
        """Adds facts; a near-duplicate of a stored one refreshes it instead. Oldest out past capacity
        (the user's own, when given; the deployment's otherwise)."""
        self.ensure()
        facts = [f for f in facts if f.text.strip()]
        if not facts:
            return {"added": 0, "refreshed": 0, "evicted": 0}
        owner = self.owner(kind, user_id, assistant_id)
        flt = {"kind": kind, "owner": owner}
        vectors = self.embedder.embed([f.text for f in facts])
        now = time.time()
        added = refreshed = 0
        for fact, vector in zip(facts, vectors, strict=True):
            near = self.store.query(KNOWLEDGE, vector=vector, filter=flt, limit=1)
            if near and near[0].score >= self.settings.knowledge_duplicate_threshold:
                self.store.set_payload(
                    KNOWLEDGE, [near[0].id], {"updated_at": now, "date": fact.date or near[0].payload.get("date", "")}
                )
                refreshed += 1
                continue
            point_id = fact_point_id(kind, owner, fact.text)
            payload = {
                "kind": kind,
                "owner": owner,
                "text": fact.text.strip(),
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
            }
            self.store.upsert(KNOWLEDGE, [PointIn(id=point_id, vector=vector, payload=payload)])
            added += 1
        evicted = self._trim(flt, capacity or self.settings.long_term_knowledge_capacity)
        return {"added": added, "refreshed": refreshed, "evicted": evicted}

    def _trim(self, flt: dict[str, Any], capacity: int) -> int:
        """FIFO by creation time, as the paper's knowledge queues (capacity 100 each)."""
        total = self.store.count(KNOWLEDGE, filter=flt)
        if total <= capacity:
            return 0
        oldest = self.store.scroll(KNOWLEDGE, filter=flt, order_by="created_ms", limit=total - capacity)
        self.store.delete_ids(KNOWLEDGE, [h.id for h in oldest])
        return len(oldest)

    def search(
        self, kind: str, user_id: str, assistant_id: str | None, vector: Sequence[float], limit: int
    ) -> list[KnowledgeEntry]:
        self.ensure()
        hits = self.store.query(KNOWLEDGE, vector=vector, filter=self._filter(kind, user_id, assistant_id), limit=limit)
        return [_entry(h) for h in hits]

    def list(self, kind: str, user_id: str, assistant_id: str | None = None) -> list[KnowledgeEntry]:
        self.ensure()
        hits = self.store.scroll(KNOWLEDGE, filter=self._filter(kind, user_id, assistant_id), order_by="created_ms")
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

    def delete_user(self, user_id: str) -> dict[str, int]:
        """Every fact drawn from the user and their profile; counts of what was removed."""
        self.ensure()
        removed = {
            "facts": self.store.delete(KNOWLEDGE, filter={"user_id": user_id}),
            "profile": len(self.store.get(PROFILES, [profile_point_id(user_id)])),
        }
        self.store.delete_ids(PROFILES, [profile_point_id(user_id)])
        return removed

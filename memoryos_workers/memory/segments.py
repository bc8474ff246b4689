"""Mid-term segments: topic groups of pages in the vector store (their statistics and heat live in
Redis: memory/segment_stats.py).

Assignment follows the paper: a topic joins the user's best segment when
Fscore = cos(e_seg, e_topic) + Jaccard(K_seg, K_topic) >= theta, else it starts a new segment.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from memoryos_workers.embeddings.base import TextEmbedder
from memoryos_workers.memory.collections import CollectionOwner
from memoryos_workers.memory.similarity import fscore
from memoryos_workers.vectorstore import Hit, PointIn, VectorStore
from schemas.memory import SegmentAssignment, SegmentationResult, SegmentPlan, SegmentRef
from schemas.settings import Settings
from schemas.turns import SCHEMA_VERSION
from schemas.words import text_stems

SEGMENTS = "segments"
MAX_SUMMARY_CHARS = 1_500
MAX_SEGMENT_KEYWORDS = 20
CANDIDATES = 5
_NAMESPACE = uuid.UUID("0d4f7a52-8c1e-4f0b-a9d3-5b6e7c8f9a10")


def segment_point_id(user_id: str, key: str) -> str:
    """New segments are named after the batch and topic that created them: a replay reuses the id."""
    return str(uuid.uuid5(_NAMESPACE, f"segment\x1f{user_id}\x1f{key}"))


def merge_summary(parts: Sequence[str], new: str) -> list[str]:
    """The segment's summary grows with each merge; past the limit the oldest additions after the
    first (which says what the segment is about) are dropped. A summary it already holds is not added
    again (a topic that spans two batches analysed in one call is described in both)."""
    if new.strip() in parts:
        return list(parts)
    merged = [*parts, new.strip()]
    while len(merged) > 2 and len(" ".join(merged)) > MAX_SUMMARY_CHARS:
        del merged[1]
    return merged


def merge_keywords(old: Sequence[str], new: Sequence[str]) -> list[str]:
    out = list(dict.fromkeys([*old, *new]))
    return out[:MAX_SEGMENT_KEYWORDS]


def segment_vector_text(payload: dict[str, Any]) -> str:
    """A segment's vector is its (merged) summary's (see SegmentStore.write)."""
    return str(payload["summary"])


class SegmentStore(CollectionOwner):
    def __init__(self, store: VectorStore, embedder: TextEmbedder, settings: Settings) -> None:
        super().__init__(store, embedder)
        self.settings = settings

    def _create(self) -> None:
        self.store.ensure_collection(
            SEGMENTS,
            dim=self.embedder.dim,
            model=self.embedder.fingerprint,
            tenant_fields=("user_id",),
            keyword_fields=("segment_id", "assistant_id"),
            float_fields=("created_at",),
        )

    # -- reading ------------------------------------------------------------------------------
    def nearby(self, user_id: str, vector: Sequence[float], limit: int = 3) -> list[SegmentRef]:
        self.ensure()
        hits = self.store.query(SEGMENTS, vector=vector, filter={"user_id": user_id}, limit=limit)
        return [_ref(hit) for hit in hits]

    def all_for_user(self, user_id: str) -> list[Hit]:
        self.ensure()
        return self.store.scroll(SEGMENTS, filter={"user_id": user_id})

    # -- planning -----------------------------------------------------------------------------
    def plan(
        self, user_id: str, batch_id: str, result: SegmentationResult, theta: float | None = None
    ) -> SegmentPlan:
        """`theta`: the user's own similarity threshold when they have one (schemas.knobs)."""
        self.ensure()
        theta = self.settings.mid_term_similarity_threshold if theta is None else theta
        vectors = self.embedder.embed([t.summary for t in result.topics])
        assignments = []
        merged_here: dict[str, SegmentAssignment] = {}  # two topics of one batch may join one segment
        for index, (topic, vector) in enumerate(zip(result.topics, vectors, strict=True)):
            hits = self.store.query(
                SEGMENTS, vector=vector, filter={"user_id": user_id}, limit=CANDIDATES, with_vectors=True
            )
            scored = [(fscore(h.vector or [], h.payload.get("keywords", []), vector, topic.keywords), h) for h in hits]
            best = max(scored, key=lambda pair: pair[0], default=None)
            if best is not None and best[0] >= theta:
                score, hit = best
                prior = merged_here.get(hit.id)
                parts = prior.summary_parts if prior else hit.payload.get("summary_parts") or [hit.payload["summary"]]
                known = prior.keywords if prior else hit.payload.get("keywords", [])
                assignment = SegmentAssignment(
                    topic_index=index,
                    segment_id=hit.id,
                    merged=True,
                    fscore=score,
                    theme=hit.payload.get("theme", topic.theme),
                    summary_parts=merge_summary(parts, topic.summary),
                    keywords=merge_keywords(known, topic.keywords),
                    page_indices=topic.page_indices,
                    source=topic.source,
                )
                merged_here[hit.id] = assignment
                assignments.append(assignment)
            else:
                assignments.append(
                    SegmentAssignment(
                        topic_index=index,
                        segment_id=segment_point_id(user_id, f"{batch_id}:{index}"),
                        merged=False,
                        fscore=best[0] if best else None,
                        theme=topic.theme,
                        summary_parts=[topic.summary],
                        keywords=list(topic.keywords),
                        page_indices=topic.page_indices,
                        source=topic.source,
                    )
                )
        return SegmentPlan(assignments=assignments)

    # -- writing ------------------------------------------------------------------------------
    def write(self, user_id: str, assistant_id: str | None, plan: SegmentPlan, provenance: dict[str, Any]) -> None:
        """Absolute values from the recorded plan: writing twice leaves the same segments."""
        self.ensure()
        latest = list({a.segment_id: a for a in plan.assignments}.values())  # one point per segment
        sources: dict[str, str] = {}  # a segment any of whose topics came from the LLM says so
        for a in plan.assignments:
            if a.source:
                sources[a.segment_id] = "llm" if "llm" in (a.source, sources.get(a.segment_id)) else a.source
        vectors = self.embedder.embed([a.summary for a in latest])
        existing = {h.id: h.payload for h in self.store.get(SEGMENTS, [a.segment_id for a in latest])}
        now = time.time()
        points = []
        for assignment, vector in zip(latest, vectors, strict=True):
            old = existing.get(assignment.segment_id, {})
            points.append(
                PointIn(
                    id=assignment.segment_id,
                    vector=vector,
                    payload={
                        "user_id": user_id,
                        "assistant_id": assistant_id,
                        "segment_id": assignment.segment_id,
                        "theme": assignment.theme,
                        "summary": assignment.summary,
                        "summary_stems": text_stems(assignment.summary),  # read by retrieval's context fitting
                        "summary_parts": assignment.summary_parts,
                        "keywords": assignment.keywords,
                        "created_at": old.get("created_at", now),
                        "updated_at": now,
                        "embedding_model": self.embedder.fingerprint,
                        "schema_version": SCHEMA_VERSION,
                        **provenance,
                        **({"source": sources[assignment.segment_id]} if assignment.segment_id in sources else {}),
                    },
                )
            )
        self.store.upsert(SEGMENTS, points)

    # -- deleting ----------------------------------------------------------------------------------
    def delete(self, segment_ids: Sequence[str]) -> None:
        """The segment points only: their pages and statistics belong to PageStore and SegmentStats."""
        if segment_ids:
            self.ensure()
            self.store.delete_ids(SEGMENTS, list(segment_ids))

    def delete_user(self, user_id: str) -> int:
        self.ensure()
        return self.store.delete(SEGMENTS, filter={"user_id": user_id})

    def get(self, segment_ids: Sequence[str]) -> list[Hit]:
        self.ensure()
        return self.store.get(SEGMENTS, list(segment_ids))

    def search(self, user_id: str, vector: Sequence[float], limit: int) -> list[Hit]:
        """A user's segments nearest the vector (the first stage of the paper's retrieval)."""
        self.ensure()
        return self.store.query(SEGMENTS, vector=vector, filter={"user_id": user_id}, limit=limit)


def _ref(hit: Hit) -> SegmentRef:
    return SegmentRef(
        segment_id=hit.id,
        theme=hit.payload.get("theme", ""),
        summary=hit.payload.get("summary", ""),
        keywords=hit.payload.get("keywords", []),
    )

"""StubEmbedder: the real embedder's interface without a model, and the segment store driven by it.

The store runs for real on both backends (Edge in a folder, qdrant-client in memory); only the
vectors are the stub's, whose similarities follow shared words, so every merge below is predictable.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from memoryos_workers.embeddings.base import TextEmbedder
from memoryos_workers.embeddings.embedder import Embedder, get_embedder
from memoryos_workers.embeddings.offline_model import offline_sources
from memoryos_workers.embeddings.stub import StubEmbedder
from memoryos_workers.memory.segments import SegmentStore, segment_point_id
from memoryos_workers.memory.similarity import cosine
from memoryos_workers.vectorstore import ModelMismatchError, VectorStore
from memoryos_workers.vectorstore.edge import EdgeStore
from memoryos_workers.vectorstore.server import QdrantServerStore
from schemas.memory import PageAnalysis, SegmentationResult, TopicAnalysis
from schemas.settings import Settings

HIKING = "We planned a hiking trip to Sintra in May"
HIKING_AGAIN = "Hiking trip to Sintra in May planned with friends"
BAKING = "My sourdough starter needs rye flour"
CAT = "The cat knocked the vase off the shelf"


def result(*topics: tuple[str, list[str]]) -> SegmentationResult:
    """One page per topic (the store plans topics; pages only travel along)."""
    return SegmentationResult(
        pages=[PageAnalysis(index=i, continues_previous=False, chain_summary="") for i in range(len(topics))],
        topics=[
            TopicAnalysis(theme=summary[:20], summary=summary, keywords=keywords, page_indices=[i])
            for i, (summary, keywords) in enumerate(topics)
        ],
    )


# -- the stub itself -------------------------------------------------------------------------------


def test_vectors_are_deterministic_unit_length_and_follow_shared_words() -> None:
    embedder = StubEmbedder()
    again = StubEmbedder()
    hiking, hiking_again, baking, cat = embedder.embed([HIKING, HIKING_AGAIN, BAKING, CAT])
    assert again.embed_query(HIKING) == hiking == embedder.embed_query(HIKING), "same text, same vector"
    for vector in (hiking, baking, cat, embedder.embed_query(""), embedder.embed_query("?!")):
        assert len(vector) == 384 and math.isclose(math.fsum(x * x for x in vector), 1.0)
    assert cosine(hiking, hiking_again) > 0.6, "seven shared words"
    assert abs(cosine(hiking, cat)) < 0.3 and abs(cosine(baking, cat)) < 0.3, "no shared word"
    assert embedder.texts == [HIKING, HIKING_AGAIN, BAKING, CAT, HIKING, "", "?!"]
    assert StubEmbedder(dim=8).embed_query(HIKING) != hiking[:8] and len(StubEmbedder(dim=8).embed_query("x")) == 8


def test_bad_input_is_refused_as_the_real_embedder_refuses_it() -> None:
    embedder = StubEmbedder()
    assert embedder.embed([]) == []
    with pytest.raises(TypeError, match="embed_query"):
        embedder.embed("a bare string")  # would otherwise embed each character
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        embedder.embed(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="not str"):
        embedder.embed_query(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dim"):
        StubEmbedder(dim=1)
    assert embedder.texts == []


@pytest.mark.skipif(offline_sources() is None, reason="offline model packages not installed")
def test_stub_and_real_embedder_are_congruent(settings: Settings) -> None:
    """Same interface (members, signatures, dimension, input checks), so a consumer cannot tell them apart."""
    real, stub = get_embedder(settings), StubEmbedder()
    assert isinstance(real, TextEmbedder) and isinstance(stub, TextEmbedder)
    assert stub.dim == real.dim == 384
    assert isinstance(stub.fingerprint, str) and stub.fingerprint != real.fingerprint, "never mixed in a collection"
    for name in ("embed", "embed_query"):
        want = inspect.signature(getattr(TextEmbedder, name)).parameters
        for impl in (Embedder, StubEmbedder):
            got = inspect.signature(getattr(impl, name)).parameters
            assert [(p.name, p.kind, p.default) for p in got.values()] == [
                (p.name, p.kind, p.default) for p in want.values()
            ], f"{impl.__name__}.{name}"
    for embedder in (real, stub):
        assert embedder.embed([]) == []
        vectors = embedder.embed([HIKING, CAT])
        assert [len(v) for v in vectors] == [384, 384]
        assert math.isclose(math.fsum(x * x for x in vectors[0]), 1.0, rel_tol=1e-5)
        for bad in ("a bare string", ["ok", 3]):
            with pytest.raises(TypeError):
                embedder.embed(bad)  # type: ignore[arg-type]


# -- a real consumer: the segment store ------------------------------------------------------------


@pytest.fixture(params=["edge", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    backend: VectorStore
    if request.param == "edge":
        backend = EdgeStore(tmp_path / "vectors", "stub")
    else:
        backend = QdrantServerStore(QdrantClient(":memory:"), "stub")
    yield backend
    backend.close()


@pytest.fixture
def segments(store: VectorStore, settings: Settings) -> SegmentStore:
    return SegmentStore(store, StubEmbedder(), settings)


def test_plan_starts_segments_then_merges_a_topic_into_the_closest(segments: SegmentStore) -> None:
    first = segments.plan("u1", "b1", result((HIKING, ["hiking", "sintra"]), (BAKING, ["sourdough", "baking"])))
    assert [a.merged for a in first.assignments] == [False, False]
    assert [a.segment_id for a in first.assignments] == [segment_point_id("u1", "b1:0"), segment_point_id("u1", "b1:1")]
    assert [a.fscore for a in first.assignments] == [None, None], "an empty store has no candidate"
    segments.write("u1", "a1", first, {"source": "llm"})

    second = segments.plan("u1", "b2", result((HIKING_AGAIN, ["hiking", "sintra", "friends"]), (CAT, ["cat"])))
    joined, fresh = second.assignments
    assert joined.merged and joined.segment_id == first.assignments[0].segment_id
    assert joined.fscore is not None and joined.fscore > segments.settings.mid_term_similarity_threshold
    assert joined.summary_parts == [HIKING, HIKING_AGAIN]
    assert joined.keywords == ["hiking", "sintra", "friends"]
    assert not fresh.merged and fresh.segment_id == segment_point_id("u1", "b2:1")
    assert fresh.fscore is not None and fresh.fscore < segments.settings.mid_term_similarity_threshold
    assert segments.embedder.texts[-2:] == [HIKING_AGAIN, CAT], "plan embeds the topic summaries"  # type: ignore[attr-defined]

    segments.write("u1", "a1", second, {"source": "llm"})
    stored = {h.id: h.payload for h in segments.all_for_user("u1")}
    assert len(stored) == 3
    assert stored[joined.segment_id]["summary_parts"] == [HIKING, HIKING_AGAIN]
    assert stored[joined.segment_id]["embedding_model"] == segments.embedder.fingerprint


def test_plan_honours_theta_and_never_merges_across_users(segments: SegmentStore) -> None:
    segments.write("u1", None, segments.plan("u1", "b1", result((HIKING, ["hiking", "sintra"]))), {})
    same = result((HIKING, ["hiking", "sintra"]))
    assert segments.plan("u1", "b2", same).assignments[0].merged, "the same topic joins its segment"
    assert not segments.plan("u1", "b2", same, theta=2.01).assignments[0].merged, "Fscore is at most 2"
    other = segments.plan("u2", "b1", same).assignments[0]
    assert not other.merged and other.fscore is None, "another user's segments are not candidates"


def test_two_topics_of_one_batch_join_one_segment_and_keep_both_additions(segments: SegmentStore) -> None:
    segments.write("u1", None, segments.plan("u1", "b1", result((HIKING, ["hiking", "sintra"]))), {})
    plan = segments.plan(
        "u1", "b2", result((HIKING_AGAIN, ["hiking", "sintra"]), (HIKING + " again", ["hiking", "sintra"]))
    )
    a, b = plan.assignments
    assert a.merged and b.merged and a.segment_id == b.segment_id
    assert b.summary_parts == [HIKING, HIKING_AGAIN, HIKING + " again"], "the second builds on the first"


def test_a_store_built_with_the_stub_refuses_another_models_vectors(store: VectorStore, settings: Settings) -> None:
    SegmentStore(store, StubEmbedder(), settings).ensure()

    class Other(StubEmbedder):
        def __init__(self) -> None:
            super().__init__()
            self.fingerprint = "another/model@0"

    with pytest.raises(ModelMismatchError):
        SegmentStore(store, Other(), settings).ensure()

"""Moving a populated store to another embedding model (`memoryos reembed`): every vector made again,
payloads kept, the model recorded, and the old model refused afterwards; another dimension refused
before anything changes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from memoryos_workers.embeddings.sparse import get_sparse_encoder
from memoryos_workers.memory.pages import PAGES, TERMS
from memoryos_workers.memory.persona_store import KNOWLEDGE, PROFILES
from memoryos_workers.memory.segments import SEGMENTS
from memoryos_workers.ops.reembed import SOURCES, ReembedError, reembed
from memoryos_workers.runtime import Runtime
from memoryos_workers.vectorstore import ModelMismatchError, PointIn, open_store
from memoryos_workers.vectorstore.base import MIGRATING
from schemas.settings import Settings
from tests.conftest import PREFIX

pytestmark = pytest.mark.integration

USER = "reembed-user"
DETAIL = "My grandfather's old fishing boat is called Marisol, he built it in Porto in 1971."


class Renamed:
    """The same model under another fingerprint (only one model is installed here), or another dimension."""

    def __init__(self, inner: Any, fingerprint: str, dim: int | None = None) -> None:
        self.inner, self.fingerprint, self.dim = inner, fingerprint, dim or inner.dim
        self.embedded = 0

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.embedded += len(texts)
        return self.inner.embed(texts)


@pytest.fixture
def populated(tmp_path: Path, redis_client: redis.Redis, fake_llm) -> Iterator[Settings]:  # noqa: ANN001
    settings = Settings(key_prefix=f"{PREFIX}-re-{uuid.uuid4().hex[:8]}", data_dir=tmp_path / "data",
                        openai_base_url=fake_llm.base_url, openai_api_key="k")
    rt = Runtime(settings)
    turns = [{"user_id": USER, "user_input": f"Let me tell you about hiking, part {i}.", "agent_response": "Nice!"}
             for i in range(40)]
    turns[3] = {"user_id": USER, "user_input": DETAIL, "agent_response": "What a story!"}
    rt.publisher.publish_many(turns)
    rt.pending.check(USER, force=True)  # the partial buffer too
    rt.promoter.run(USER)
    rt.persona_worker.extract(USER, force=True)
    rt.close()
    yield settings
    keys = list(redis_client.scan_iter(match=f"{settings.key_prefix}*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def opened(populated: Settings) -> Iterator[tuple[Any, Any]]:
    """The deployment's embedder and the populated store, opened directly as `memoryos reembed` does."""
    from memoryos_workers.embeddings.embedder import get_embedder

    store = open_store(populated)
    yield get_embedder(populated), store
    store.close()


def _payloads(store: Any) -> dict[str, dict[str, dict]]:
    return {name: {h.id: h.payload for page in store.scan(name) for h in page} for name in SOURCES}


def test_reembed_moves_every_vector_to_the_new_model(opened: tuple[Any, Any]) -> None:
    real, store = opened
    before = _payloads(store)
    assert all(before[name] for name in (PAGES, SEGMENTS, PROFILES, KNOWLEDGE)), "a populated store"
    new = Renamed(real, "all-MiniLM-L6-v2@new")
    done = reembed(store, new, get_sparse_encoder())
    assert done == {name: len(points) for name, points in before.items()}
    assert new.embedded == sum(done.values())
    after = _payloads(store)
    for name, points in before.items():
        assert set(after[name]) == set(points), f"{name}: the same points"
        for point_id, payload in points.items():
            assert after[name][point_id] == {**payload, "embedding_model": new.fingerprint}
    for name in SOURCES:
        store.ensure_collection(name, dim=new.dim, model=new.fingerprint)  # the new model opens it
        with pytest.raises(ModelMismatchError, match="holds vectors of all-MiniLM-L6-v2@new"):
            store.ensure_collection(name, dim=new.dim, model=real.fingerprint)
    # Dense and BM25 search still find the detail.
    vector = real.embed_query("What is my grandfather's boat called?")
    sparse = get_sparse_encoder().embed_query("grandfather boat Marisol")
    for hits in (store.query(PAGES, vector=vector, filter={"user_id": USER}, limit=3),
                 store.query(PAGES, sparse=sparse, filter={"user_id": USER}, limit=3)):
        assert DETAIL in [h.payload["user_input"] for h in hits]
    assert reembed(store, new, get_sparse_encoder()) == done, "running again changes nothing more"


def test_reembed_gives_pages_stored_before_terms_their_terms(opened: tuple[Any, Any]) -> None:
    real, store = opened
    hits = [h for page in store.scan(PAGES) for h in page]
    bare = {h.id: {k: v for k, v in h.payload.items() if k != TERMS} for h in hits}
    store.upsert(PAGES, [PointIn(id=i, vector=real.embed(["x"])[0], payload=p) for i, p in bare.items()])
    assert not any(TERMS in h.payload for page in store.scan(PAGES) for h in page)
    reembed(store, Renamed(real, "all-MiniLM-L6-v2@new"), get_sparse_encoder())
    after = {h.id: h.payload for page in store.scan(PAGES) for h in page}
    assert {i: p[TERMS] for i, p in after.items()} == {h.id: h.payload[TERMS] for h in hits}


def test_an_interrupted_reembedding_blocks_both_models_until_finished(opened: tuple[Any, Any]) -> None:
    real, store = opened
    store.ensure_collection(PAGES, dim=real.dim, model=real.fingerprint)
    store.set_model(PAGES, MIGRATING + "all-MiniLM-L6-v2@new")  # as a run killed mid-way leaves it
    for model in (real.fingerprint, "all-MiniLM-L6-v2@new"):
        with pytest.raises(ModelMismatchError, match="run `memoryos reembed`"):
            store.ensure_collection(PAGES, dim=real.dim, model=model)
    reembed(store, Renamed(real, "all-MiniLM-L6-v2@new"), get_sparse_encoder())
    store.ensure_collection(PAGES, dim=real.dim, model="all-MiniLM-L6-v2@new")


def test_another_dimension_is_refused_before_anything_changes(opened: tuple[Any, Any]) -> None:
    real, store = opened
    before = _payloads(store)
    wide = Renamed(real, "bigger-model@x", dim=real.dim * 2)
    with pytest.raises(ReembedError, match=r"dimension is fixed.*memoryos export"):
        reembed(store, wide, get_sparse_encoder())
    assert wide.embedded == 0
    assert _payloads(store) == before
    for name in SOURCES:
        store.ensure_collection(name, dim=real.dim, model=real.fingerprint)  # still the old model's

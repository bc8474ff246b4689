"""One contract for every VectorStore backend: the memory tiers must behave the same on Edge and on a server.

Vectors are tiny and handmade (no embedding model), so every expected ranking can be reasoned about.
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient

from memoryos_workers.vectorstore import (
    Hit,
    ModelMismatchError,
    PointIn,
    SparseVector,
    StoreLockedError,
    VectorStore,
    VectorStoreError,
    open_store,
)
from memoryos_workers.vectorstore.edge import EdgeStore
from memoryos_workers.vectorstore.server import QdrantServerStore
from schemas.settings import Settings

DIM = 8
COLL = "mem"
PREFIX = "test"
NS = uuid.UUID("6f1c9d1e-4a51-4c4e-9a47-0a4f3f0b7c11")
REPO = Path(__file__).resolve().parents[2]


def pid(*parts: Any) -> str:
    return str(uuid.uuid5(NS, ":".join(map(str, parts))))


def unit(axis: int, tilt: float = 0.0, towards: int = 1) -> list[float]:
    """A basis vector, optionally tilted towards another axis, so cosine rankings are predictable."""
    vec = [0.0] * DIM
    vec[axis] = 1.0
    vec[towards] += tilt
    return vec


def point(
    key: Any, vector: list[float], user: str = "a", sparse: SparseVector | None = None, **payload: Any
) -> PointIn:
    return PointIn(id=pid(key), vector=vector, payload={"user_id": user, **payload}, sparse=sparse)


def ids(hits: list[Hit]) -> list[str]:
    return [h.id for h in hits]


def make_edge(tmp_path: Path) -> EdgeStore:
    return EdgeStore(tmp_path / "vectors", PREFIX)


@pytest.fixture(params=["edge", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    if request.param == "edge":
        backend: VectorStore = make_edge(tmp_path)
    else:
        backend = QdrantServerStore(QdrantClient(":memory:"), PREFIX)
    yield backend
    backend.close()


@pytest.fixture
def coll(store: VectorStore) -> VectorStore:
    store.ensure_collection(COLL, dim=DIM, integer_fields=("seq",), keyword_fields=("kind",))
    return store


@pytest.fixture
def sparse_coll(store: VectorStore) -> VectorStore:
    store.ensure_collection(COLL, dim=DIM, sparse=True)
    return store


# --- collections ----------------------------------------------------------------------------------


def test_store_satisfies_protocol(store: VectorStore) -> None:
    assert isinstance(store, VectorStore)


def test_ensure_collection_is_idempotent(store: VectorStore) -> None:
    for _ in range(2):
        store.ensure_collection(COLL, dim=DIM, integer_fields=("seq",), float_fields=("w",))
    store.upsert(COLL, [point(1, unit(0))])
    store.ensure_collection(COLL, dim=DIM, integer_fields=("seq",), float_fields=("w",))
    assert store.count(COLL, filter={"user_id": "a"}) == 1


def test_ensure_collection_rejects_another_dim(store: VectorStore) -> None:
    store.ensure_collection(COLL, dim=DIM)
    with pytest.raises(VectorStoreError, match="dim"):
        store.ensure_collection(COLL, dim=DIM * 2)


def test_vectors_of_another_model_are_refused(store: VectorStore) -> None:
    """Two models of one dimension would mix silently: the collection records its model."""
    store.ensure_collection(COLL, dim=DIM, model="all-MiniLM-L6-v2@aaaa")
    store.upsert(COLL, [point(1, unit(0))])
    store.ensure_collection(COLL, dim=DIM, model="all-MiniLM-L6-v2@aaaa")  # the same model: fine
    with pytest.raises(ModelMismatchError, match=r"holds vectors of all-MiniLM-L6-v2@aaaa.*embeds with bge@bbbb.*"
                                                 r"MEMORYOS_EMBEDDING_MODEL"):
        store.ensure_collection(COLL, dim=DIM, model="bge@bbbb")
    assert store.count(COLL, filter={"user_id": "a"}) == 1, "nothing stored is touched"


def test_a_collection_made_before_models_were_recorded_adopts_the_first(store: VectorStore) -> None:
    store.ensure_collection(COLL, dim=DIM)
    store.ensure_collection(COLL, dim=DIM, model="m@1")
    store.ensure_collection(COLL, dim=DIM, model="m@1")
    with pytest.raises(ModelMismatchError):
        store.ensure_collection(COLL, dim=DIM, model="m@2")


def test_edge_remembers_the_model_across_reopen(tmp_path: Path) -> None:
    first = make_edge(tmp_path)
    first.ensure_collection(COLL, dim=DIM, model="m@1")
    first.close()
    second = make_edge(tmp_path)
    try:
        with pytest.raises(ModelMismatchError, match=str(tmp_path)):
            second.ensure_collection(COLL, dim=DIM, model="m@2")
    finally:
        second.close()


def test_unknown_collection_raises(store: VectorStore) -> None:
    with pytest.raises(VectorStoreError, match="ensure_collection"):
        store.count("never_made", filter={"user_id": "a"})
    with pytest.raises(VectorStoreError, match="ensure_collection"):
        store.upsert("never_made", [point(1, unit(0))])


# --- writes and dense queries ---------------------------------------------------------------------


def test_query_returns_nearest_first_with_payload(coll: VectorStore) -> None:
    coll.upsert(COLL, [point(i, unit(i), text=f"t{i}") for i in range(4)])
    hits = coll.query(COLL, vector=unit(2, tilt=0.1), filter={"user_id": "a"}, limit=3)
    assert hits[0].id == pid(2)
    assert hits[0].payload == {"user_id": "a", "text": "t2"}
    assert hits[0].vector is None
    assert hits[0].score == pytest.approx(1 / math.sqrt(1.01), abs=1e-4)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len(hits) == 3


def test_query_without_payload_ranks_the_same_and_reads_no_payload(sparse_coll: VectorStore) -> None:
    """Retrieval ranks by ids and scores only, then reads the payloads of the pages it keeps."""
    _keyword_corpus(sparse_coll)
    for query in ({"vector": unit(0, tilt=0.3)}, {"sparse": SparseVector([COMMON, RARE], [1.0, 1.0])}):
        full = sparse_coll.query(COLL, filter={"user_id": "a"}, limit=4, **query)
        bare = sparse_coll.query(COLL, filter={"user_id": "a"}, limit=4, with_payload=False, **query)
        assert [(h.id, h.score) for h in bare] == [(h.id, h.score) for h in full]
        assert all(h.payload == {} for h in bare) and all(h.payload for h in full)
        assert [h.payload for h in sparse_coll.get(COLL, ids(bare))] == [h.payload for h in full]


def test_query_with_vectors_and_threshold(coll: VectorStore) -> None:
    coll.upsert(COLL, [point(i, unit(i)) for i in range(4)])
    hits = coll.query(
        COLL, vector=unit(1), filter={"user_id": "a"}, limit=4, with_vectors=True, score_threshold=0.5
    )
    assert ids(hits) == [pid(1)]
    assert hits[0].vector == pytest.approx(unit(1))


def test_upsert_same_id_twice_keeps_one_point(coll: VectorStore) -> None:
    coll.upsert(COLL, [point("same", unit(0), version=1)])
    coll.upsert(COLL, [point("same", unit(1), version=2)])
    assert coll.count(COLL, filter={"user_id": "a"}) == 1
    (hit,) = coll.get(COLL, [pid("same")])
    assert hit.payload["version"] == 2


def test_tenant_isolation(coll: VectorStore) -> None:
    coll.upsert(COLL, [point(("a", i), unit(i), user="a") for i in range(4)])
    coll.upsert(COLL, [point(("b", i), unit(i), user="b") for i in range(4)])
    a_ids = {pid(("a", i)) for i in range(4)}
    hits = coll.query(COLL, vector=unit(0), filter={"user_id": "a"}, limit=10)
    assert set(ids(hits)) == a_ids
    assert {h.id for h in coll.scroll(COLL, filter={"user_id": "a"})} == a_ids
    assert {h.id for h in coll.scroll(COLL, filter={"user_id": ["a", "c"]})} == a_ids
    assert coll.count(COLL, filter={"user_id": ("a", "b")}) == 8
    assert coll.count(COLL, filter={"user_id": "c"}) == 0
    assert coll.delete(COLL, filter={"user_id": "b"}) == 4
    assert coll.count(COLL, filter={"user_id": "a"}) == 4


def test_empty_filter_raises(coll: VectorStore) -> None:
    with pytest.raises(ValueError, match="filter"):
        coll.query(COLL, vector=unit(0), filter={}, limit=3)
    with pytest.raises(ValueError, match="filter"):
        coll.scroll(COLL, filter={})
    with pytest.raises(ValueError, match="filter"):
        coll.count(COLL, filter={})
    with pytest.raises(ValueError, match="filter"):
        coll.delete(COLL, filter={})


def test_query_needs_a_vector(coll: VectorStore) -> None:
    with pytest.raises(ValueError):
        coll.query(COLL, filter={"user_id": "a"}, limit=3)


def test_invalid_point_id_raises(coll: VectorStore) -> None:
    with pytest.raises(ValueError, match="UUID"):
        coll.upsert(COLL, [PointIn(id="not-a-uuid", vector=unit(0), payload={"user_id": "a"})])


def test_ids_in_any_uuid_spelling_read_back_in_the_canonical_one(coll: VectorStore) -> None:
    """Ids are compared as the canonical string: one given upper-case, without hyphens or in braces reads
    the same point, and comes back in the form the store returns everywhere."""
    canonical = pid("spelling")
    coll.upsert(COLL, [PointIn(id=canonical, vector=unit(0), payload={"user_id": "a"})])
    spellings = [canonical, canonical.upper(), canonical.replace("-", ""), "{" + canonical + "}"]
    assert [[h.id for h in coll.get(COLL, [s])] for s in spellings] == [[canonical]] * len(spellings)
    with pytest.raises(ValueError, match="UUID"):
        coll.get(COLL, [canonical[:-1] + "g"])


# --- sparse and hybrid ----------------------------------------------------------------------------

COMMON, RARE = 7, 42


def _keyword_corpus(store: VectorStore) -> None:
    """`target` alone has the rare token; `decoy` is the best dense match but lacks the token."""
    others = [
        point(f"o{i}", unit(i + 2), sparse=SparseVector([COMMON, 100 + i], [1.0, 1.0]), name=f"o{i}")
        for i in range(4)
    ]
    target = point("target", unit(0, tilt=0.6), sparse=SparseVector([COMMON, RARE], [1.0, 1.0]))
    decoy = point("decoy", unit(0), sparse=SparseVector([COMMON, 200], [1.0, 1.0]))
    store.upsert(COLL, [*others, target, decoy])
    store.upsert(COLL, [point("b", unit(0), user="b", sparse=SparseVector([RARE], [5.0]))])


def test_sparse_query_ranks_exact_keyword_first(sparse_coll: VectorStore) -> None:
    _keyword_corpus(sparse_coll)
    query = SparseVector([COMMON, RARE], [1.0, 1.0])
    hits = sparse_coll.query(COLL, sparse=query, filter={"user_id": "a"}, limit=3)
    assert hits[0].id == pid("target")
    assert pid("b") not in ids(hits)


def test_hybrid_rrf_ranks_exact_keyword_first(sparse_coll: VectorStore) -> None:
    _keyword_corpus(sparse_coll)
    dense_only = sparse_coll.query(COLL, vector=unit(0), filter={"user_id": "a"}, limit=3)
    assert dense_only[0].id == pid("decoy")
    hits = sparse_coll.query(
        COLL, vector=unit(0), sparse=SparseVector([RARE], [1.0]), filter={"user_id": "a"}, limit=3
    )
    assert ids(hits)[:2] == [pid("target"), pid("decoy")]
    assert all(h.payload["user_id"] == "a" for h in hits)


def test_count_matches_a_value_inside_an_integer_list(store: VectorStore) -> None:
    """Pages' `terms` are lists of integers: a value matches a point holding it, a range any element."""
    store.ensure_collection(COLL, dim=DIM, integer_fields=("terms",))
    store.upsert(COLL, [point("x", unit(0), terms=[5, 3_000_000_000]), point("y", unit(1), terms=[-1]),
                        point("z", unit(2)), point("w", unit(3), user="b", terms=[5])])
    assert store.count(COLL, filter={"user_id": "a", "terms": 5}) == 1
    assert store.count(COLL, filter={"user_id": "a", "terms": 3_000_000_000}) == 1
    assert store.count(COLL, filter={"user_id": "a", "terms": {"gte": -1}}) == 2  # "z" has none


# --- scroll, retrieve, count ----------------------------------------------------------------------


def test_scroll_returns_every_match_across_pages(coll: VectorStore) -> None:
    seqs = list(range(250))
    random.Random(7).shuffle(seqs)
    coll.upsert(COLL, [point(("s", s), unit(s % DIM), seq=s) for s in seqs])
    coll.upsert(COLL, [point(("b", i), unit(0), user="b", seq=i) for i in range(10)])
    hits = coll.scroll(COLL, filter={"user_id": "a"})
    assert len(hits) == 250 and len(set(ids(hits))) == 250
    assert all(h.score == 0.0 and h.vector is None for h in hits)
    assert len(coll.scroll(COLL, filter={"user_id": "a"}, limit=7)) == 7
    with_vectors = coll.scroll(COLL, filter={"user_id": "a"}, limit=3, with_vectors=True)
    assert all(h.vector is not None and len(h.vector) == DIM for h in with_vectors)


def test_scroll_order_by_int_field(coll: VectorStore) -> None:
    seqs = list(range(250))
    random.Random(3).shuffle(seqs)
    coll.upsert(COLL, [point(("s", s), unit(0), seq=s) for s in seqs])
    coll.upsert(COLL, [point("no-seq", unit(0))])
    ordered = coll.scroll(COLL, filter={"user_id": "a"}, order_by="seq")
    assert [h.payload["seq"] for h in ordered] == list(range(250))
    first = coll.scroll(COLL, filter={"user_id": "a"}, order_by="seq", limit=5)
    assert [h.payload["seq"] for h in first] == [0, 1, 2, 3, 4]


def test_scroll_order_by_descending(coll: VectorStore) -> None:
    coll.upsert(COLL, [point(("s", s), unit(0), seq=s) for s in (3, 9, 1, 7)])
    coll.upsert(COLL, [point("no-seq", unit(0))])
    first = coll.scroll(COLL, filter={"user_id": "a"}, order_by="seq", limit=3, descending=True)
    assert [h.payload["seq"] for h in first] == [9, 7, 3]
    every = coll.scroll(COLL, filter={"user_id": "a"}, order_by="seq", descending=True)
    assert [h.payload["seq"] for h in every] == [9, 7, 3, 1]


def test_retrieve_by_ids(coll: VectorStore) -> None:
    coll.upsert(COLL, [point(i, unit(i), n=i) for i in range(3)])
    hits = coll.get(COLL, [pid(2), pid("missing"), pid(0)], with_vectors=True)
    assert ids(hits) == [pid(2), pid(0)]
    assert hits[0].payload["n"] == 2 and hits[0].vector == pytest.approx(unit(2))
    assert coll.get(COLL, []) == []
    assert coll.get(COLL, [pid(1).upper()])[0].id == pid(1)


def test_count_and_delete_by_filter(coll: VectorStore) -> None:
    coll.upsert(COLL, [point(i, unit(0), kind="x" if i < 3 else "y") for i in range(5)])
    coll.upsert(COLL, [point("bx", unit(0), user="b", kind="x")])
    assert coll.count(COLL, filter={"user_id": "a", "kind": "x"}) == 3
    assert coll.delete(COLL, filter={"user_id": "a", "kind": "x"}) == 3
    assert coll.delete(COLL, filter={"user_id": "a", "kind": "x"}) == 0
    assert coll.count(COLL, filter={"user_id": "a"}) == 2
    assert coll.count(COLL, filter={"user_id": "b", "kind": "x"}) == 1


def test_delete_ids(coll: VectorStore) -> None:
    coll.upsert(COLL, [point(i, unit(0)) for i in range(4)])
    coll.delete_ids(COLL, [pid(0), pid(2), pid("missing")])
    coll.delete_ids(COLL, [])
    remaining = coll.scroll(COLL, filter={"user_id": "a"})
    assert sorted(ids(remaining)) == sorted([pid(1), pid(3)])


def test_set_payload_merges_and_bool_filters(coll: VectorStore) -> None:
    coll.upsert(COLL, [point(i, unit(0), text=f"t{i}", flag=False) for i in range(3)])
    coll.set_payload(COLL, [pid(0), pid(1), pid("missing")], {"flag": True, "heat": 2.5})
    (hit,) = coll.get(COLL, [pid(0)])
    assert hit.payload == {"user_id": "a", "text": "t0", "flag": True, "heat": 2.5}
    assert coll.count(COLL, filter={"user_id": "a", "flag": True}) == 2
    assert coll.count(COLL, filter={"user_id": "a", "flag": False}) == 1
    assert coll.count(COLL, filter={"user_id": "a", "flag": [True, False]}) == 3


def test_range_filter(coll: VectorStore) -> None:
    coll.upsert(COLL, [point(i, unit(0), seq=i, heat=i / 2) for i in range(10)])
    assert coll.count(COLL, filter={"user_id": "a", "seq": {"gte": 3, "lt": 6}}) == 3
    assert coll.count(COLL, filter={"user_id": "a", "heat": {"gt": 3.9}}) == 2
    hits = coll.query(COLL, vector=unit(0), filter={"user_id": "a", "seq": {"lte": 1}}, limit=10)
    assert sorted(h.payload["seq"] for h in hits) == [0, 1]
    with pytest.raises(ValueError):
        coll.count(COLL, filter={"user_id": "a", "seq": {"between": 1}})


def test_nested_payload_keys_filter_exact_values(coll: VectorStore) -> None:
    """Retrieval's metadata filters are `metadata.<key>` conditions: exact values, by type (True is not 1)."""
    metas = [{"channel": "web", "n": 1}, {"channel": "app", "n": 1}, {"channel": "web", "vip": True},
             {"channel": "web"}]
    coll.upsert(COLL, [point(i, unit(0), metadata=m, assistant_id="a1" if i % 2 else "a2")
                       for i, m in enumerate(metas)])
    assert coll.count(COLL, filter={"user_id": "a", "metadata.channel": "web"}) == 3
    assert coll.count(COLL, filter={"user_id": "a", "metadata.channel": "web", "metadata.n": 1}) == 1
    assert coll.count(COLL, filter={"user_id": "a", "metadata.vip": True}) == 1
    assert coll.count(COLL, filter={"user_id": "a", "metadata.n": True}) == 0
    hits = coll.query(COLL, vector=unit(0), filter={"user_id": "a", "metadata.channel": "web", "assistant_id": "a2"},
                      limit=10)
    assert sorted(ids(hits)) == sorted([pid(0), pid(2)])


def test_concurrent_upserts_from_threads(coll: VectorStore) -> None:
    def work(thread: int) -> None:
        for batch in range(10):
            coll.upsert(COLL, [point((thread, batch, i), unit(i)) for i in range(5)])
            coll.count(COLL, filter={"user_id": "a"})
            coll.query(COLL, vector=unit(thread % DIM), filter={"user_id": "a"}, limit=3)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert coll.count(COLL, filter={"user_id": "a"}) == 8 * 10 * 5


# --- Edge only ------------------------------------------------------------------------------------


def test_edge_persists_across_close_and_reopen(tmp_path: Path) -> None:
    first = make_edge(tmp_path)
    first.ensure_collection(COLL, dim=DIM, integer_fields=("seq",))
    first.upsert(COLL, [point(i, unit(i), seq=i) for i in range(5)])
    first.close()
    with pytest.raises(VectorStoreError, match="closed"):
        first.count(COLL, filter={"user_id": "a"})

    second = make_edge(tmp_path)
    try:
        assert second.count(COLL, filter={"user_id": "a"}) == 5  # loaded lazily, no ensure needed
        assert second.query(COLL, vector=unit(3), filter={"user_id": "a"}, limit=1)[0].id == pid(3)
        with pytest.raises(VectorStoreError, match="dim"):
            second.ensure_collection(COLL, dim=DIM + 1)
        second.ensure_collection(COLL, dim=DIM, integer_fields=("seq",))
        assert [
            h.payload["seq"] for h in second.scroll(COLL, filter={"user_id": "a"}, order_by="seq", limit=2)
        ] == [0, 1]
    finally:
        second.close()


_HOLD = """
import sys
from pathlib import Path
from memoryos_workers.vectorstore.edge import EdgeStore
store = EdgeStore(Path(sys.argv[1]), sys.argv[2])
store.ensure_collection(sys.argv[3], dim=int(sys.argv[4]))
print("ready", flush=True)
sys.stdin.readline()
store.close()
"""

_TRY = """
import sys
from pathlib import Path
from memoryos_workers.vectorstore import StoreLockedError
from memoryos_workers.vectorstore.edge import EdgeStore
store = EdgeStore(Path(sys.argv[1]), sys.argv[2])
try:
    print("count", store.count(sys.argv[3], filter={"user_id": "a"}))
except StoreLockedError as exc:
    print("locked:", exc)
    sys.exit(3)
store.close()
"""


def _python(script: str, tmp_path: Path, **kwargs: Any) -> dict[str, Any]:
    """Runs the backend in a real second process, since the WAL lock is per process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, "-c", script, str(tmp_path / "vectors"), PREFIX, COLL, str(DIM)]
    return {"args": args, "env": env, "cwd": str(REPO), "text": True, **kwargs}


def test_edge_second_process_gets_store_locked_error(tmp_path: Path) -> None:
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    with subprocess.Popen(**_python(_HOLD, tmp_path, **pipes)) as holder:
        try:
            assert holder.stdout is not None and holder.stdin is not None and holder.stderr is not None
            assert holder.stdout.readline().strip() == "ready", holder.stderr.read()
            local = make_edge(tmp_path)
            with pytest.raises(StoreLockedError, match="MEMORYOS_QDRANT_URL") as caught:
                local.count(COLL, filter={"user_id": "a"})
            assert str(tmp_path / "vectors" / f"{PREFIX}_{COLL}") in str(caught.value)
            with pytest.raises(StoreLockedError):
                local.ensure_collection(COLL, dim=DIM)
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.wait(timeout=60) == 0
        finally:
            if holder.poll() is None:
                holder.kill()
    assert local.count(COLL, filter={"user_id": "a"}) == 0  # the lock is gone once the holder closed

    other = subprocess.run(**_python(_TRY, tmp_path, capture_output=True, timeout=60))
    local.close()
    assert other.returncode == 3, other.stderr
    assert other.stdout.startswith("locked:") and "MEMORYOS_QDRANT_URL" in other.stdout


# --- factory --------------------------------------------------------------------------------------


def test_open_store_picks_backend(tmp_path: Path) -> None:
    embedded = open_store(Settings(qdrant_url=None, data_dir=tmp_path, key_prefix="fx"))
    assert isinstance(embedded, EdgeStore)
    embedded.ensure_collection(COLL, dim=DIM)
    embedded.close()
    assert (tmp_path / "vectors" / f"fx_{COLL}").is_dir()
    in_memory = open_store(Settings(qdrant_url=":memory:", key_prefix="fx"))
    assert isinstance(in_memory, QdrantServerStore)
    in_memory.ensure_collection(COLL, dim=DIM)
    in_memory.close()


def test_the_runtime_records_its_model_in_every_collection(runtime) -> None:  # noqa: ANN001
    from memoryos_workers.memory.pages import PAGES
    from memoryos_workers.memory.persona_store import KNOWLEDGE, PROFILES
    from memoryos_workers.memory.segments import SEGMENTS

    runtime.warm_up()
    dim = runtime.embedder.dim
    for name in (PAGES, SEGMENTS, PROFILES, KNOWLEDGE):
        runtime.store.ensure_collection(name, dim=dim, model=runtime.embedder.fingerprint)
        with pytest.raises(ModelMismatchError, match=runtime.embedder.fingerprint):
            runtime.store.ensure_collection(name, dim=dim, model="another-model@0000")


def test_scan_yields_every_point_of_every_tenant_once(coll: VectorStore) -> None:
    """The operators' read (memoryos reembed): no tenant filter, page by page."""
    coll.upsert(COLL, [point(i, unit(i % DIM), user=f"u{i % 7}") for i in range(600)])
    pages = list(coll.scan(COLL))
    seen = [h.id for page in pages for h in page]
    assert len(pages) > 1 and sorted(seen) == sorted(pid(i) for i in range(600))
    assert {h.payload["user_id"] for page in pages for h in page} == {f"u{i}" for i in range(7)}


def test_set_model_is_what_the_next_open_checks(store: VectorStore) -> None:
    store.ensure_collection(COLL, dim=DIM, model="m@1")
    store.set_model(COLL, "m@2")
    store.ensure_collection(COLL, dim=DIM, model="m@2")
    with pytest.raises(ModelMismatchError):
        store.ensure_collection(COLL, dim=DIM, model="m@1")

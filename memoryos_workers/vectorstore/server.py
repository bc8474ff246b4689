"""The multi-process backend: a Qdrant server through qdrant-client, for deployments with many workers.

`QdrantClient(":memory:")` works too (tests, demos). That local mode is plain Python without locks and
ignores payload indexes, so this adapter serialises calls and silences the index warning for it only.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from qdrant_client import QdrantClient, models

from .base import (
    DENSE,
    MODEL_KEY,
    SCROLL_PAGE,
    SPARSE,
    Condition,
    Filter,
    Hit,
    PointIn,
    SparseVector,
    VectorStoreError,
    check_dim,
    check_limit,
    check_model,
    check_name,
    check_query,
    make_hit,
    normalize_id,
    normalize_ids,
    parse_filter,
    prefetch_limit,
    sort_by_field,
)

UPSERT_BATCH = 256
_LOCAL_INDEX_WARNING = "Payload indexes have no effect in the local Qdrant"


class QdrantServerStore:
    """A VectorStore over Qdrant collections named f"{prefix}_{name}"."""

    def __init__(self, client: QdrantClient, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        options = client.init_options
        self._in_memory = options.get("location") == ":memory:"
        local = self._in_memory or options.get("path") is not None
        self._lock: AbstractContextManager[Any] = threading.RLock() if local else nullcontext()
        self._known: set[str] = set()

    # --- lifecycle ---------------------------------------------------------------------------

    def ensure_collection(
        self,
        name: str,
        *,
        dim: int,
        sparse: bool = False,
        tenant_fields: Sequence[str] = ("user_id",),
        keyword_fields: Sequence[str] = (),
        integer_fields: Sequence[str] = (),
        float_fields: Sequence[str] = (),
        model: str | None = None,
    ) -> None:
        check_name(name)
        check_dim(dim)
        full = self._full(name)
        with self._engine(f"ensure collection {full!r}"):
            if not self._client.collection_exists(full):
                self._create(full, dim, sparse, model)
            info = self._client.get_collection(full)
            _check_shape(info, name, dim, sparse)
            recorded = (info.config.metadata or {}).get(MODEL_KEY)
            check_model(name, recorded, model, f"the Qdrant server ({full})")
            if model and not recorded:  # made before models were recorded: adopt the one in use
                self._client.update_collection(full, metadata={MODEL_KEY: model})
            wanted = _index_schemas(tenant_fields, keyword_fields, integer_fields, float_fields)
            self._create_indexes(full, info, wanted)
        self._known.add(name)

    def close(self) -> None:
        with self._engine("close the client"):
            self._client.close()

    # --- writes ------------------------------------------------------------------------------

    def upsert(self, collection: str, points: Sequence[PointIn]) -> None:
        full = self._collection(collection)
        structs = [_point(p) for p in points]
        for start in range(0, len(structs), UPSERT_BATCH):
            with self._engine(f"upsert into {full!r}"):
                self._client.upsert(full, structs[start : start + UPSERT_BATCH], wait=True)

    def delete(self, collection: str, *, filter: Filter) -> int:
        """Counts first; on a shared server a concurrent writer can make the number approximate."""
        full = self._collection(collection)
        qfilter = _filter(parse_filter(filter))
        with self._engine(f"delete from {full!r}"):
            deleted = self._client.count(full, count_filter=qfilter, exact=True).count
            if deleted:
                self._client.delete(full, points_selector=models.FilterSelector(filter=qfilter), wait=True)
        return deleted

    def delete_ids(self, collection: str, ids: Sequence[str]) -> None:
        full = self._collection(collection)
        point_ids = normalize_ids(ids)
        if point_ids:
            with self._engine(f"delete ids from {full!r}"):
                selector = models.PointIdsList(points=list(point_ids))
                self._client.delete(full, points_selector=selector, wait=True)

    def set_payload(self, collection: str, ids: Sequence[str], payload: dict[str, Any]) -> None:
        """By id filter, so ids deleted meanwhile are skipped instead of failing the whole batch."""
        full = self._collection(collection)
        point_ids = normalize_ids(ids)
        if not point_ids or not payload:
            return
        by_ids = models.Filter(must=[models.HasIdCondition(has_id=list(point_ids))])
        with self._engine(f"set payload in {full!r}"):
            self._client.set_payload(full, payload=dict(payload), points=by_ids, wait=True)

    # --- reads -------------------------------------------------------------------------------

    def query(
        self,
        collection: str,
        *,
        vector: Sequence[float] | None = None,
        sparse: SparseVector | None = None,
        filter: Filter,
        limit: int,
        with_vectors: bool = False,
        score_threshold: float | None = None,
        with_payload: bool = True,
    ) -> list[Hit]:
        """Hybrid = RRF over a dense and a sparse branch; score_threshold then applies to the dense branch."""
        check_query(vector, sparse, limit)
        full = self._collection(collection)
        qfilter = _filter(parse_filter(filter))
        args = _query_args(vector, sparse, qfilter, limit, score_threshold)
        with self._engine(f"query {full!r}"):
            response = self._client.query_points(
                full,
                query_filter=qfilter,
                limit=limit,
                with_payload=with_payload,
                with_vectors=_with_vectors(with_vectors),
                **args,
            )
        return [make_hit(p.id, p.score, p.payload, p.vector) for p in response.points]

    def scroll(
        self,
        collection: str,
        *,
        filter: Filter,
        limit: int | None = None,
        with_vectors: bool = False,
        order_by: str | None = None,
        descending: bool = False,
    ) -> list[Hit]:
        """With order_by and no limit we sort client-side: an ordered scroll returns no next-page cursor."""
        check_limit(limit)
        full = self._collection(collection)
        qfilter = _filter(parse_filter(filter))
        if order_by is not None and limit is not None:
            return self._ordered_page(full, qfilter, limit, with_vectors, order_by, descending)
        hits = self._scroll_all(full, qfilter, limit, with_vectors)
        return sort_by_field(hits, order_by, descending) if order_by is not None else hits

    def get(self, collection: str, ids: Sequence[str], with_vectors: bool = False) -> list[Hit]:
        full = self._collection(collection)
        point_ids = normalize_ids(ids)
        if not point_ids:
            return []
        with self._engine(f"retrieve from {full!r}"):
            records = self._client.retrieve(
                full, ids=list(point_ids), with_payload=True, with_vectors=_with_vectors(with_vectors)
            )
        found = {str(r.id): make_hit(r.id, 0.0, r.payload, r.vector) for r in records}
        return [found[i] for i in point_ids if i in found]

    def count(self, collection: str, *, filter: Filter) -> int:
        full = self._collection(collection)
        qfilter = _filter(parse_filter(filter))
        with self._engine(f"count {full!r}"):
            return self._client.count(full, count_filter=qfilter, exact=True).count

    # --- internals ---------------------------------------------------------------------------

    def _full(self, name: str) -> str:
        return f"{self._prefix}_{name}"

    def _collection(self, name: str) -> str:
        """Asks the server once per name, so collections ensured by another process are usable."""
        full = self._full(name)
        if name in self._known:
            return full
        with self._engine(f"look up collection {full!r}"):
            exists = self._client.collection_exists(full)
        if not exists:
            raise VectorStoreError(f"collection {full!r} does not exist; call ensure_collection() first")
        self._known.add(name)
        return full

    def _create(self, full: str, dim: int, sparse: bool, model: str | None) -> None:
        """Another worker may create it first; that race is fine as long as the shape matches."""
        sparse_config = {SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)} if sparse else None
        try:
            self._client.create_collection(
                full,
                vectors_config={DENSE: models.VectorParams(size=dim, distance=models.Distance.COSINE)},
                sparse_vectors_config=sparse_config,
                metadata={MODEL_KEY: model} if model else None,
            )
        except Exception:
            if not self._client.collection_exists(full):
                raise

    def _create_indexes(self, full: str, info: models.CollectionInfo, wanted: dict[str, Any]) -> None:
        existing = info.payload_schema or {}
        with warnings.catch_warnings():
            if self._in_memory:
                warnings.filterwarnings("ignore", message=_LOCAL_INDEX_WARNING)
            for field, schema in wanted.items():
                if field not in existing:
                    self._client.create_payload_index(full, field, field_schema=schema, wait=True)

    def scan(self, collection: str) -> Iterator[list[Hit]]:
        full = self._collection(collection)
        offset: Any = None
        while True:
            with self._engine(f"scan {full!r}"):
                records, offset = self._client.scroll(
                    full, scroll_filter=None, limit=SCROLL_PAGE, offset=offset, with_payload=True, with_vectors=False
                )
            if records:
                yield [make_hit(r.id, 0.0, r.payload, r.vector) for r in records]
            if offset is None:
                return

    def set_model(self, collection: str, model: str) -> None:
        full = self._collection(collection)
        with self._engine(f"record the model of {full!r}"):
            self._client.update_collection(full, metadata={MODEL_KEY: model})

    def _scroll_all(
        self, full: str, qfilter: models.Filter, limit: int | None, with_vectors: bool
    ) -> list[Hit]:
        hits: list[Hit] = []
        offset: Any = None
        while limit is None or len(hits) < limit:
            page = SCROLL_PAGE if limit is None else min(SCROLL_PAGE, limit - len(hits))
            with self._engine(f"scroll {full!r}"):
                records, offset = self._client.scroll(
                    full,
                    scroll_filter=qfilter,
                    limit=page,
                    offset=offset,
                    with_payload=True,
                    with_vectors=_with_vectors(with_vectors),
                )
            hits.extend(make_hit(r.id, 0.0, r.payload, r.vector) for r in records)
            if offset is None:
                break
        return hits

    def _ordered_page(
        self, full: str, qfilter: models.Filter, limit: int, with_vectors: bool, order_by: str,
        descending: bool = False,
    ) -> list[Hit]:
        with self._engine(f"scroll {full!r} ordered by {order_by!r}"):
            records, _ = self._client.scroll(
                full,
                scroll_filter=qfilter,
                limit=limit,
                with_payload=True,
                with_vectors=_with_vectors(with_vectors),
                order_by=models.OrderBy(key=order_by,
                                        direction=models.Direction.DESC if descending else models.Direction.ASC),
            )
        return [make_hit(r.id, 0.0, r.payload, r.vector) for r in records]

    @contextmanager
    def _engine(self, action: str) -> Iterator[None]:
        """One lock (local mode only) and one error type for every call into the client."""
        with self._lock:
            try:
                yield
            except VectorStoreError:
                raise
            except Exception as exc:  # only client calls run inside; our argument checks run before
                raise VectorStoreError(f"qdrant failed to {action}: {exc}") from exc


# --- translation ---------------------------------------------------------------------------------


def _check_shape(info: models.CollectionInfo, name: str, dim: int, sparse: bool) -> None:
    vectors = info.config.params.vectors
    dense = vectors.get(DENSE) if isinstance(vectors, dict) else None
    if dense is None:
        raise VectorStoreError(f"collection {name!r} exists without a dense vector named {DENSE!r}")
    if dense.size != dim:
        raise VectorStoreError(f"collection {name!r} exists with dim {dense.size}, not {dim}")
    if sparse and SPARSE not in (info.config.params.sparse_vectors or {}):
        raise VectorStoreError(f"collection {name!r} exists without a sparse vector")


def _index_schemas(
    tenant: Sequence[str], keyword: Sequence[str], integer: Sequence[str], floats: Sequence[str]
) -> dict[str, Any]:
    schemas: dict[str, Any] = {f: models.PayloadSchemaType.KEYWORD for f in keyword}
    schemas.update({f: models.PayloadSchemaType.INTEGER for f in integer})
    schemas.update({f: models.PayloadSchemaType.FLOAT for f in floats})
    schemas.update({f: models.KeywordIndexParams(type="keyword", is_tenant=True) for f in tenant})
    return schemas


def _point(point: PointIn) -> models.PointStruct:
    vectors: dict[str, Any] = {DENSE: [float(x) for x in point.vector]}
    if point.sparse is not None:
        vectors[SPARSE] = _sparse(point.sparse)
    return models.PointStruct(id=normalize_id(point.id), vector=vectors, payload=dict(point.payload))


def _sparse(sparse: SparseVector) -> models.SparseVector:
    return models.SparseVector(
        indices=[int(i) for i in sparse.indices], values=[float(v) for v in sparse.values]
    )


def _with_vectors(with_vectors: bool) -> list[str] | bool:
    return [DENSE] if with_vectors else False


def _query_args(
    vector: Sequence[float] | None,
    sparse: SparseVector | None,
    qfilter: models.Filter,
    limit: int,
    score_threshold: float | None,
) -> dict[str, Any]:
    dense_query = [float(x) for x in vector] if vector is not None else None
    sparse_query = _sparse(sparse) if sparse is not None else None
    if sparse_query is None:
        return {"query": dense_query, "using": DENSE, "score_threshold": score_threshold}
    if dense_query is None:
        return {"query": sparse_query, "using": SPARSE, "score_threshold": score_threshold}
    depth = prefetch_limit(limit)
    prefetch = [
        models.Prefetch(
            query=dense_query, using=DENSE, filter=qfilter, limit=depth, score_threshold=score_threshold
        ),
        models.Prefetch(query=sparse_query, using=SPARSE, filter=qfilter, limit=depth),
    ]
    return {"prefetch": prefetch, "query": models.FusionQuery(fusion=models.Fusion.RRF)}


def _filter(conditions: list[Condition]) -> models.Filter:
    return models.Filter(must=[_server_condition(c) for c in conditions])


def _server_condition(cond: Condition) -> Any:
    if cond.kind == "range":
        return models.FieldCondition(key=cond.field, range=models.Range(**cond.value))
    if cond.kind == "eq":
        return models.FieldCondition(key=cond.field, match=models.MatchValue(value=cond.value))
    if cond.value and isinstance(cond.value[0], bool):  # MatchAny takes only str or int lists
        return models.Filter(should=[_server_condition(Condition(cond.field, "eq", v)) for v in cond.value])
    return models.FieldCondition(key=cond.field, match=models.MatchAny(any=list(cond.value)))

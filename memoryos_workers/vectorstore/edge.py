"""The embedded default: Qdrant Edge shards in a local folder, so a single machine needs no Qdrant server.

One shard per collection. Edge holds an exclusive lock on each shard's WAL for as long as it is open, so a
folder can be served by one process only; worker threads of that process share the store through one
RLock. Segments are never optimized here (no `optimize()` call): per-user data stays small enough for
plain search, and optimizing would block every thread for the whole rebuild. Measured for issue 24 on the
100k-page latency bench store (1,000 users x 100 pages, 100k facts; each shard one plain segment after the
build): optimize() took 135-145 s of CPU in two runs (pages 82-85 s, facts 51-60 s) and built HNSW
segments, and a user's reads and retrievals cost the same after as before (filtered dense search 0.22 ms
both; retrieval p50 within 1%, interleaved), with the same contexts for 300 of 300 queries.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from .base import (
    SCROLL_PAGE,
    Filter,
    Hit,
    PointIn,
    SparseVector,
    VectorStoreError,
    check_dim,
    check_limit,
    check_name,
    check_query,
    make_hit,
    normalize_ids,
    parse_filter,
    plain_hit,
    sort_by_field,
)
from .edge_requests import _filter, _point, _query_request, _with_vector
from .edge_shards import (
    META_FILE,
    SHARD_MARKER,
    _check_meta,
    _config,
    _engine_errors,
    _flush_and_close,
    _index_schemas,
    _open_shard,
    _write_meta,
)


class EdgeStore:
    """A VectorStore over Qdrant Edge shards stored in `path / f"{prefix}_{name}"`."""

    def __init__(self, path: Path, prefix: str) -> None:
        self._root = Path(path)
        self._prefix = prefix
        self._lock = threading.RLock()
        self._shards: dict[str, qe.EdgeShard] = {}
        self._closed = False

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
        with self._lock:
            shard = self._open_or_create(name, dim, sparse)
            _check_meta(self._folder(name), name, dim, sparse, model)
            wanted = _index_schemas(tenant_fields, keyword_fields, integer_fields, float_fields)
            self._create_indexes(shard, wanted)

    def close(self) -> None:
        """Flushes before closing because the next process must not need to replay a long WAL."""
        with self._lock:
            self._closed = True
            shards, self._shards = self._shards, {}
            failures = {name: err for name, shard in shards.items() if (err := _flush_and_close(shard))}
        if failures:
            raise VectorStoreError(f"could not flush and close shards at {self._root}: {failures}")

    # --- writes ------------------------------------------------------------------------------

    def upsert(self, collection: str, points: Sequence[PointIn]) -> None:
        if not points:
            return
        edge_points = [_point(p) for p in points]
        self._update(collection, qe.UpdateOperation.upsert_points(edge_points))

    def delete(self, collection: str, *, filter: Filter) -> int:
        edge_filter = _filter(parse_filter(filter))
        with self._lock:  # count and delete must see the same points
            shard = self._shard(collection)
            with _engine_errors(f"delete from {collection!r}"):
                deleted = shard.count(qe.CountRequest(exact=True, filter=edge_filter))
                if deleted:
                    shard.update(qe.UpdateOperation.delete_points_by_filter(edge_filter))
        return deleted

    def delete_ids(self, collection: str, ids: Sequence[str]) -> None:
        point_ids = normalize_ids(ids)
        if point_ids:
            self._update(collection, qe.UpdateOperation.delete_points(point_ids))

    def set_payload(self, collection: str, ids: Sequence[str], payload: dict[str, Any]) -> None:
        """By id filter, so ids deleted meanwhile are skipped instead of failing the whole batch."""
        point_ids = normalize_ids(ids)
        if not point_ids or not payload:
            return
        by_ids = qe.Filter(must=[qe.HasIdCondition(set(point_ids))])
        self._update(collection, qe.UpdateOperation.set_payload_by_filter(by_ids, dict(payload)))

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
        edge_filter = _filter(parse_filter(filter))
        request = _query_request(vector, sparse, edge_filter, limit, score_threshold, with_vectors, with_payload)
        with self._lock:
            shard = self._shard(collection)
            with _engine_errors(f"query {collection!r}"):
                scored = shard.query(request)
        if with_vectors:
            return [make_hit(p.id, p.score, p.payload, p.vector) for p in scored]
        if not with_payload:  # ids and scores: nothing else to convert
            return [plain_hit(str(p.id), float(p.score), {}) for p in scored]
        return [plain_hit(str(p.id), float(p.score), _payload(p.payload)) for p in scored]

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
        """With order_by and no limit we sort client-side: Edge's ordered scroll has no next-page cursor."""
        check_limit(limit)
        edge_filter = _filter(parse_filter(filter))
        if order_by is not None and limit is not None:
            return self._ordered_page(collection, edge_filter, limit, with_vectors, order_by, descending)
        hits = self._scroll_all(collection, edge_filter, limit, with_vectors)
        return sort_by_field(hits, order_by, descending) if order_by is not None else hits

    def get(self, collection: str, ids: Sequence[str], with_vectors: bool = False) -> list[Hit]:
        point_ids = normalize_ids(ids)
        if not point_ids:
            return []
        with self._lock:
            shard = self._shard(collection)
            with _engine_errors(f"retrieve from {collection!r}"):
                records = shard.retrieve(point_ids, True, _with_vector(with_vectors))
        found = {h.id: h for h in _records(records, with_vectors)}  # r.id: a new UUID
        return [found[i] for i in point_ids if i in found]

    def count(self, collection: str, *, filter: Filter) -> int:
        request = qe.CountRequest(exact=True, filter=_filter(parse_filter(filter)))
        with self._lock:
            shard = self._shard(collection)
            with _engine_errors(f"count {collection!r}"):
                return shard.count(request)

    # --- internals ---------------------------------------------------------------------------

    def _folder(self, name: str) -> Path:
        return self._root / f"{self._prefix}_{name}"

    def _shard(self, name: str) -> qe.EdgeShard:
        """Loads lazily so a restarted worker can serve collections another run created."""
        with self._lock:
            self._check_open()
            shard = self._shards.get(name)
            if shard is not None:
                return shard
            folder = self._folder(name)
            if not (folder / SHARD_MARKER).exists():
                raise VectorStoreError(
                    f"collection {name!r} does not exist at {folder}; call ensure_collection() first"
                )
            return self._remember(name, _open_shard(folder, None))

    def _open_or_create(self, name: str, dim: int, sparse: bool) -> qe.EdgeShard:
        folder = self._folder(name)
        if (folder / SHARD_MARKER).exists() or name in self._shards:
            return self._shard(name)
        self._check_open()
        shard = self._remember(name, _open_shard(folder, _config(dim, sparse)))
        _write_meta(folder, dim, sparse)
        return shard

    def _remember(self, name: str, shard: qe.EdgeShard) -> qe.EdgeShard:
        self._shards[name] = shard
        return shard

    def _check_open(self) -> None:
        if self._closed:
            raise VectorStoreError(f"the vector store at {self._root} is closed")

    def _create_indexes(self, shard: qe.EdgeShard, wanted: dict[str, Any]) -> None:
        with _engine_errors("create payload indexes"):
            existing = shard.info().payload_schema
            for field, schema in wanted.items():
                if field not in existing:
                    shard.update(qe.UpdateOperation.create_field_index(field, schema))

    def _update(self, collection: str, operation: qe.UpdateOperation) -> None:
        """Edge applies an update before returning, which is the "wait=True" the interface promises."""
        with self._lock:
            shard = self._shard(collection)
            with _engine_errors(f"update {collection!r}"):
                shard.update(operation)

    def _scroll_all(
        self, collection: str, edge_filter: qe.Filter, limit: int | None, with_vectors: bool
    ) -> list[Hit]:
        hits: list[Hit] = []
        offset: Any = None
        while limit is None or len(hits) < limit:
            page = SCROLL_PAGE if limit is None else min(SCROLL_PAGE, limit - len(hits))
            records, offset = self._scroll_page(collection, edge_filter, page, offset, with_vectors)
            hits.extend(_records(records, with_vectors))
            if offset is None:
                break
        return hits

    def scan(self, collection: str) -> Iterator[list[Hit]]:
        offset: Any = None
        while True:
            records, offset = self._scroll_page(collection, qe.Filter(must=[]), SCROLL_PAGE, offset, False)
            if records:
                yield [make_hit(r.id, 0.0, r.payload, r.vector) for r in records]
            if offset is None:
                return

    def set_model(self, collection: str, model: str) -> None:
        with self._lock:
            self._shard(collection)  # it must exist
            folder = self._folder(collection)
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            _write_meta(folder, meta["dim"], bool(meta.get("sparse")), model)

    def _scroll_page(
        self, collection: str, edge_filter: qe.Filter, page: int, offset: Any, with_vectors: bool
    ) -> tuple[list[qe.Record], Any]:
        request = qe.ScrollRequest(
            offset=offset,
            limit=page,
            filter=edge_filter,
            with_payload=True,
            with_vector=_with_vector(with_vectors),
        )
        with self._lock:
            shard = self._shard(collection)
            with _engine_errors(f"scroll {collection!r}"):
                return shard.scroll(request)

    def _ordered_page(
        self, collection: str, edge_filter: qe.Filter, limit: int, with_vectors: bool, order_by: str,
        descending: bool = False,
    ) -> list[Hit]:
        request = qe.ScrollRequest(
            limit=limit,
            filter=edge_filter,
            with_payload=True,
            with_vector=_with_vector(with_vectors),
            order_by=qe.OrderBy(order_by, direction=qe.Direction.Desc if descending else qe.Direction.Asc),
        )
        with self._lock:
            shard = self._shard(collection)
            with _engine_errors(f"scroll {collection!r} ordered by {order_by!r}"):
                records, _ = shard.scroll(request)
        return _records(records, with_vectors)


def _records(records: list[qe.Record], with_vectors: bool) -> list[Hit]:
    if with_vectors:
        return [make_hit(r.id, 0.0, r.payload, r.vector) for r in records]
    return [plain_hit(str(r.id), 0.0, _payload(r.payload)) for r in records]


def _payload(payload: Any) -> dict[str, Any]:
    """A point's payload as make_hit keeps it: Edge's fresh dict as it is (each read of `.payload` converts
    the point's payload again, so it is read once), anything else copied."""
    return payload if type(payload) is dict else dict(payload or {})


# --- opening and metadata ------------------------------------------------------------------------

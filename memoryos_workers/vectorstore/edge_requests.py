"""Our points, filters and queries in Qdrant Edge's own types."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import qdrant_edge as qe

from .base import (
    DENSE,
    RRF_K,
    SPARSE,
    Condition,
    PointIn,
    SparseVector,
    normalize_id,
    prefetch_limit,
)


def _point(point: PointIn) -> qe.Point:
    vectors: dict[str, Any] = {DENSE: [float(x) for x in point.vector]}
    if point.sparse is not None:
        vectors[SPARSE] = _sparse(point.sparse)
    return qe.Point(normalize_id(point.id), vectors, dict(point.payload))


def _sparse(sparse: SparseVector) -> qe.SparseVector:
    return qe.SparseVector([int(i) for i in sparse.indices], [float(v) for v in sparse.values])


def _with_vector(with_vectors: bool) -> list[str] | bool:
    return [DENSE] if with_vectors else False


def _query_request(
    vector: Sequence[float] | None,
    sparse: SparseVector | None,
    edge_filter: qe.Filter,
    limit: int,
    score_threshold: float | None,
    with_vectors: bool,
    with_payload: bool = True,
) -> qe.QueryRequest:
    common: dict[str, Any] = dict(
        limit=limit, filter=edge_filter, with_payload=with_payload, with_vector=_with_vector(with_vectors)
    )
    dense_query = qe.Query.Nearest(_floats(vector), using=DENSE) if vector is not None else None
    sparse_query = qe.Query.Nearest(_sparse(sparse), using=SPARSE) if sparse is not None else None
    if dense_query is None or sparse_query is None:
        return qe.QueryRequest(query=dense_query or sparse_query, score_threshold=score_threshold, **common)
    depth = prefetch_limit(limit)
    prefetches = [
        qe.Prefetch(depth, query=dense_query, filter=edge_filter, score_threshold=score_threshold),
        qe.Prefetch(depth, query=sparse_query, filter=edge_filter),
    ]
    return qe.QueryRequest(query=qe.Fusion.Rrf(k=RRF_K), prefetches=prefetches, **common)


def _floats(vector: Sequence[float]) -> list[float]:
    """The vector as a list for Edge, which reads each element as a float (a list the embedder returned is
    passed as it is: copying its 384 floats cost about 6 microseconds, and a retrieval searches with the
    same vector five times)."""
    return vector if type(vector) is list else list(map(float, vector))


def _filter(conditions: list[Condition]) -> qe.Filter:
    return qe.Filter(must=[_edge_condition(c) for c in conditions])


def _edge_condition(cond: Condition) -> Any:
    if cond.kind == "range":
        return qe.FieldCondition(cond.field, range=qe.RangeFloat(**cond.value))
    if cond.kind == "eq":
        return qe.FieldCondition(cond.field, match=qe.MatchValue(_match_value(cond.value)))
    if cond.value and isinstance(cond.value[0], bool):  # MatchAny takes only str or int lists
        return qe.Filter(should=[_edge_condition(Condition(cond.field, "eq", v)) for v in cond.value])
    return qe.FieldCondition(cond.field, match=qe.MatchAny(list(cond.value)))


def _match_value(value: Any) -> Any:
    """qdrant-edge 0.9.0 turns a Python bool into the integer 1/0, which never matches a JSON bool;
    numpy's bool_ is not an int subclass, so it reaches Edge as a real boolean."""
    return np.bool_(value) if isinstance(value, bool) else value

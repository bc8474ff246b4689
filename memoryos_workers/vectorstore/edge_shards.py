"""Opening, closing and describing Qdrant Edge shards: their config, the metadata file beside each, payload
indexes, and the engine's errors turned into ours (the one place a held WAL lock becomes StoreLockedError)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from .base import (
    DENSE,
    SPARSE,
    StoreLockedError,
    VectorStoreError,
    check_model,
)

META_FILE = "memoryos_collection.json"
SHARD_MARKER = "edge_config.json"  # written by EdgeShard.create, so its presence means "a shard lives here"
_LOCK_MARKERS = ("WouldBlock", "Can't init WAL")


def _open_shard(folder: Path, config: qe.EdgeConfig | None) -> qe.EdgeShard:
    """The single place where Edge's bare lock exception becomes StoreLockedError."""
    try:
        if config is None:
            return qe.EdgeShard.load(str(folder))
        return qe.EdgeShard.create(str(folder), config)
    except Exception as exc:
        if any(marker in str(exc) for marker in _LOCK_MARKERS):
            raise StoreLockedError(
                f"the local vector store at {folder} is held by another process; stop that process, "
                "or set MEMORYOS_QDRANT_URL to a Qdrant server for multi-process deployments"
            ) from exc
        raise VectorStoreError(f"cannot open the local vector store at {folder}: {exc}") from exc


def _flush_and_close(shard: qe.EdgeShard) -> str | None:
    """Reports instead of raising, so one broken shard does not leave the others locked."""
    try:
        shard.flush()
        shard.close()
    except Exception as exc:
        return str(exc)
    return None


def _config(dim: int, sparse: bool) -> qe.EdgeConfig:
    sparse_vectors = {SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)} if sparse else None
    return qe.EdgeConfig(
        vectors={DENSE: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
        sparse_vectors=sparse_vectors,
    )


def _write_meta(folder: Path, dim: int, sparse: bool, model: str | None = None) -> None:
    """Our own record of the shape and the model, so a mismatch is caught before the first write."""
    tmp = folder / f"{META_FILE}.tmp"
    tmp.write_text(json.dumps({"dim": dim, "sparse": sparse, "model": model}), encoding="utf-8")
    os.replace(tmp, folder / META_FILE)


def _check_meta(folder: Path, name: str, dim: int, sparse: bool, model: str | None = None) -> None:
    meta_path = folder / META_FILE
    if not meta_path.exists():  # created by a run that died before writing it
        _write_meta(folder, dim, sparse, model)
        return
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    check_model(name, meta.get("model"), model, str(folder))
    if model and not meta.get("model"):  # made before models were recorded: adopt the one in use
        _write_meta(folder, meta.get("dim", dim), bool(meta.get("sparse", sparse)), model)
    if meta.get("dim") != dim:
        raise VectorStoreError(f"collection {name!r} exists with dim {meta.get('dim')}, not {dim}")
    if sparse and not meta.get("sparse"):
        raise VectorStoreError(f"collection {name!r} exists without a sparse vector")


def _index_schemas(
    tenant: Sequence[str], keyword: Sequence[str], integer: Sequence[str], floats: Sequence[str]
) -> dict[str, Any]:
    schemas: dict[str, Any] = {f: qe.PayloadSchemaType.Keyword for f in keyword}
    schemas.update({f: qe.PayloadSchemaType.Integer for f in integer})
    schemas.update({f: qe.PayloadSchemaType.Float for f in floats})
    schemas.update({f: qe.KeywordIndexParams(is_tenant=True) for f in tenant})
    return schemas


@contextmanager
def _engine_errors(action: str) -> Iterator[None]:
    """Edge raises bare Exception; callers get VectorStoreError with the engine's text kept."""
    try:
        yield
    except VectorStoreError:
        raise
    except Exception as exc:
        raise VectorStoreError(f"vector store failed to {action}: {exc}") from exc


# --- translation ---------------------------------------------------------------------------------

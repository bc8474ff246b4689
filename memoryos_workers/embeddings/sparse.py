"""BM25 sparse vectors computed client-side, so the embedded and the server backends get the same ones.

Qdrant Edge's `Bm25` tokenizes, drops English stopwords, stems and hashes tokens to indices, offline and
in microseconds. Documents carry term-frequency weights saturated by (k, b, avg_len); queries carry 1.0
per unique token. The collections apply the IDF modifier at search time (see vectorstore), which is
where the "inverse document frequency" half of BM25 comes from.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence

from qdrant_edge import Bm25, Bm25Config

from memoryos_workers.vectorstore import SparseVector

#: Documents whose vectors `embed_recent` keeps (a few hundred bytes each).
RECENT_CACHE_SIZE = 4096
#: Pages are one exchange (a few dozen tokens once stopwords are gone), not the 256 of Bm25's default:
#: the length normalisation should compare a page with a typical page.
AVG_PAGE_TOKENS = 48.0
LANGUAGE = "english"
K1 = 1.2  # BM25's term-frequency saturation (Bm25's default, set here so `tf_weight` uses the same)
B = 0.75  # BM25's length normalisation (likewise)


class SparseEncoder:
    """Thread-safe: the Rust model is immutable once built."""

    def __init__(self, *, language: str = LANGUAGE, avg_len: float = AVG_PAGE_TOKENS) -> None:
        self.language = language
        self.avg_len = avg_len
        self._model = Bm25(Bm25Config(k=K1, b=B, language=language, avg_len=avg_len))
        self._recent: OrderedDict[str, SparseVector] = OrderedDict()
        self._recent_lock = threading.Lock()

    def embed_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        if isinstance(texts, str):
            raise TypeError("embed_documents() takes a sequence of texts")
        return [_convert(self._model.embed_document(text)) for text in texts]

    def embed_recent(self, texts: Sequence[str]) -> list[SparseVector]:
        """`embed_documents` for the turns Redis holds, which every retrieval of their user scores again
        while they stay recent: each text is encoded once while it is among the last RECENT_CACHE_SIZE."""
        out = []
        for text in texts:
            with self._recent_lock:
                vector = self._recent.get(text)
            if vector is None:
                vector = _convert(self._model.embed_document(text))
                with self._recent_lock:
                    self._recent[text] = vector
                    while len(self._recent) > RECENT_CACHE_SIZE:
                        self._recent.popitem(last=False)
            out.append(vector)
        return out

    def forget_recent(self) -> None:
        """Drop what `embed_recent` kept (benchmarks that time a cold start)."""
        with self._recent_lock:
            self._recent.clear()

    def embed_query(self, text: str) -> SparseVector | None:
        """None when nothing is left after stopwords (a sparse query without terms matches nothing)."""
        vector = _convert(self._model.embed_query(text))
        return vector if vector.indices else None


def tf_weight(tf: int, length: int, avg_len: float = AVG_PAGE_TOKENS) -> float:
    """A document's BM25 weight of a term said `tf` times among its `length` tokens, as Bm25 computes the
    values of `embed_documents` (saturated tf, length-normalised; no IDF)."""
    return tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / avg_len))


def occurrences(vector: SparseVector, avg_len: float = AVG_PAGE_TOKENS) -> list[int]:
    """The document's tokens as term ids, each as often as it was said (in index order), recovered from its
    BM25 vector: then `tf_weight(terms.count(t), len(terms))` is the vector's value of t again, so the
    list alone (a page's `terms` payload) both counts documents per term and scores them. Each value is
    tf * (K1 + 1) / (tf + L') for the document's one L' = K1 * (1 - B + B * length / avg_len); the length
    that gives back every value with whole term frequencies is the one."""
    if not vector.indices:
        return []
    distinct = len(vector.indices)
    for length in range(distinct, 64 * distinct + 64):
        norm = K1 * (1 - B + B * length / avg_len)
        tfs = [round(v * norm / (K1 + 1 - v)) for v in vector.values]
        if sum(tfs) == length and all(tf >= 1 and math.isclose(tf_weight(tf, length, avg_len), v, rel_tol=1e-4)
                                      for tf, v in zip(tfs, vector.values, strict=True)):
            return [t for t, tf in zip(vector.indices, tfs, strict=True) for _ in range(tf)]
    return list(vector.indices)  # not reached for Bm25's vectors; each term once is the nearest


def _convert(vector: object) -> SparseVector:
    indices = [int(i) for i in vector.indices]  # type: ignore[attr-defined]
    values = [float(v) for v in vector.values]  # type: ignore[attr-defined]
    return SparseVector(indices=indices, values=values)


_encoder: SparseEncoder | None = None
_encoder_lock = threading.Lock()


def get_sparse_encoder() -> SparseEncoder:
    """One encoder per process (cheap to build, but no reason to build it per call)."""
    global _encoder
    with _encoder_lock:
        if _encoder is None:
            _encoder = SparseEncoder()
        return _encoder


def page_document(user_input: str, agent_response: str) -> str:
    """What BM25 indexes for a page: both sides, without the "User:"/"Assistant:" labels every page has."""
    return f"{user_input}\n{agent_response}"

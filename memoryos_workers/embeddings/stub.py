"""An embedder without a model, for unit tests of the stores and stages that embed.

Loading the real model takes seconds and hundreds of MB; a test of how a store plans, merges or
ranks needs vectors whose similarities can be reasoned about, not good ones. The stub hashes each
word to one of ``dim`` signed coordinates (the "hashing trick") and normalises: the same text gives
the same vector in every process, texts sharing words are close, texts sharing none are nearly
orthogonal. Its fingerprint names it, so a store built with it refuses the real model's vectors.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections.abc import Sequence

#: all-MiniLM-L6-v2's dimension, so a stub-built collection has the real one's shape.
DEFAULT_DIM = 384
_WORD = re.compile(r"\w+", re.UNICODE)


class StubEmbedder:
    """A :class:`~memoryos_workers.embeddings.base.TextEmbedder` from word hashes; counts what it embeds.

    ``texts`` records every text given to :meth:`embed` and :meth:`embed_query`, in order, so a test
    can assert what a consumer embedded (and how often).
    """

    dim: int
    fingerprint: str

    def __init__(self, dim: int = DEFAULT_DIM) -> None:
        if dim < 2:
            raise ValueError(f"dim must be at least 2, got {dim}")
        self.dim = dim
        self.fingerprint = f"memoryos/stub-word-hash@{dim}"
        self.texts: list[str] = []
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit-length vectors, one per text, in order (same checks as the real embedder)."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts; use embed_query() for one text")
        documents = list(texts)
        for i, text in enumerate(documents):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is {type(text).__name__}, not str")
        with self._lock:
            self.texts.extend(documents)
        return [self._vector(text) for text in documents]

    def embed_query(self, text: str) -> list[float]:
        """The vector of one text (the same as ``embed([text])[0]``)."""
        if not isinstance(text, str):
            raise TypeError(f"text is {type(text).__name__}, not str")
        with self._lock:
            self.texts.append(text)
        return self._vector(text)

    def _vector(self, text: str) -> list[float]:
        """Each word adds +-1 at its hashed coordinate; a text without words hashes as a whole."""
        vector = [0.0] * self.dim
        for word in _WORD.findall(text.lower()) or [text]:
            digest = hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest()
            value = int.from_bytes(digest, "big")
            vector[value % self.dim] += 1.0 if value >> 63 else -1.0
        norm = math.sqrt(sum(x * x for x in vector))
        if norm == 0.0:  # the signs cancelled out: fall back to the whole text's coordinate
            digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
            vector[int.from_bytes(digest, "big") % self.dim] = 1.0
            return vector
        return [x / norm for x in vector]

    def __repr__(self) -> str:
        return f"StubEmbedder({self.fingerprint!r}, dim={self.dim})"

"""Recently embedded documents, so a text seen again is not run through the model again.

A batch's pages are embedded when they are stored and again for the segmentation probe (the
centroid of the page vectors), and a topic summary when the segment is planned and again when it is
written: with the cache, a batch costs two model runs instead of four. Queries are never cached.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any


class VectorCache:
    """Least recently used document vectors (float32 arrays, keyed by a digest of the text).

    Keyed by a 16-byte digest rather than the text, so a cache of long pages holds no copy of them.
    A ``size`` of 0 turns it off. Thread-safe: every worker thread embeds through one cache.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[bytes, Any] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def get_many(self, texts: Sequence[str]) -> dict[str, Any]:
        """The cached vectors of those texts that have one (and marks them recently used)."""
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
        """Remember these vectors, dropping the least recently used past ``size``."""
        if not self.size:
            return
        with self._lock:
            for text, vector in vectors.items():
                self._items[self._key(text)] = vector
            while len(self._items) > self.size:
                self._items.popitem(last=False)

"""Similarity between segments, pages and queries: the paper's Fscore and the keywords it compares.

Pure functions, shared by segmentation (pipeline), segment assignment (memory) and retrieval.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from schemas.words import words


def extract_keywords(texts: Sequence[str], limit: int = 8) -> list[str]:
    counts = Counter(w for text in texts for w in words(text))
    return [w for w, _ in counts.most_common(limit)]


def jaccard(a: Sequence[str], b: Sequence[str]) -> float:
    sa, sb = set(a), set(b)
    if not sa and not sb:
        return 0.0
    return len(sa & sb) / len(sa | sb)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def centroid(vectors: Sequence[Sequence[float]]) -> list[float]:
    """The unit-length mean of a batch's page vectors: what the batch is about as a whole, to find the
    segments it may continue. (Embedding the pages' text joined together would cost a 256-token model
    run per batch, as much as five pages, and see only the first pages: the model truncates.)"""
    if not vectors:
        raise ValueError("centroid of no vectors")
    mean = [sum(column) / len(vectors) for column in zip(*vectors, strict=True)]
    norm = math.sqrt(sum(x * x for x in mean))
    return [x / norm for x in mean] if norm else mean


def fscore(
    seg_vector: Sequence[float], seg_keywords: Sequence[str], vector: Sequence[float], keywords: Sequence[str]
) -> float:
    """The paper's segment similarity: cos(e_seg, e_page) + Jaccard(K_seg, K_page)."""
    return cosine(seg_vector, vector) + jaccard(seg_keywords, keywords)

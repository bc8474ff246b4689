"""BM25 over one user's pages with that user's own IDF, not the collection's.

The store's IDF modifier counts every user's pages: in a store of many users a word one user says all the
time weighs as little as it does across everyone, and a word's weight drifts as other users write. A stock
BM25 over one conversation counts that conversation only, and so do we, with the same formula
(bench/baselines.py): idf(t) = log(1 + (N - df(t) + 0.5) / (df(t) + 0.5)) over the user's N pages.

Why a rescoring: the store's search still finds the candidates (its collection-IDF list, as deep and with
the payloads it always read), and they are ranked again by sum over terms of
user_idf(t) * query_weight(t) * page_weight(t). A page's `terms` payload lists its terms as often as it
says them, which gives back its stored BM25 weights exactly (embeddings/sparse.py `occurrences`), so
this is the exact BM25 of the user's pages for every candidate, with no read beyond the payloads; only a
page outside the candidates could be missed. Looking deeper (40 or 60 candidates for the 20 kept at 500
tokens) measured alike on conv-26 and costs a second read of payloads (0.3 ms at 100k pages), so the
list is reordered, not widened. The user's df comes from the same payload, indexed
(PageStore.term_counts, counted within the user's pages): deletes, eviction and forget need nothing more,
and a user with pages stored before `terms` existed keeps the collection's IDF until `memoryos
bm25-terms` has added them.

Cost, all of it in `early`, beside the query's embedding: one count of the user's pages and one per query
term (about 35 us each on the embedded store), and the rescoring (about 1.3 us a hit). Measured on 100k
pages of 1,000 users, 3.6 terms a query, load 11-18 from other runs: the weights 0.16-0.23 ms p50, the
whole BM25 list 0.26-0.38 ms p50 more than the store's list alone. On a Qdrant server each count is a
round trip.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from memoryos_workers.embeddings.sparse import tf_weight
from memoryos_workers.memory.pages import TERMS
from memoryos_workers.vectorstore import Hit, SparseVector


def idf(pages: int, df: int) -> float:
    """BM25's (Robertson-Sparck Jones) IDF, as the stock BM25 baseline and Qdrant's modifier compute it."""
    return math.log(1 + (pages - df + 0.5) / (df + 0.5))


def term_weights(query: SparseVector, pages: int, df: Mapping[int, int]) -> dict[int, float]:
    """The query's weight of each term: its own value (1.0 per term for queries) times the user's IDF."""
    return {t: q * idf(pages, df.get(t, 0)) for t, q in zip(query.indices, query.values, strict=True)}


def score(terms: Sequence[int] | None, weights: Mapping[int, float]) -> float:
    """A page's BM25 score from its `terms` payload (each term as often as the page says it): the page's
    own saturated, length-normalised weight of each query term (sparse.tf_weight) times the query's."""
    if not terms:
        return 0.0
    total = 0.0
    for t, w in weights.items():
        tf = terms.count(t)  # a scan in C over a page's few dozen terms
        if tf:
            total += w * tf_weight(tf, len(terms))
    return total


def rescore(hits: Sequence[Hit], weights: Mapping[int, float]) -> list[Hit]:
    """The hits ranked by the user's BM25, best first, from their payloads' `terms`; equal scores (pages that
    say the query's terms equally often in as many words: common in chat) in point id order, not the
    store's, whose order of equal scores follows its internal layout and changed from one ingestion of the
    same conversation to the next (116 of 120 conv-26 lists at 080e2a8 differed so, and with them the
    contexts built on them). A hit that scores nothing (no terms: written meanwhile by an older worker) is
    left out. On the request's path: about 1.3 microseconds a hit (27 us for 20, 63 us for 50)."""
    ranked = []
    for hit in hits:
        total = score(hit.payload.get(TERMS), weights)
        if total > 0:
            ranked.append((-total, hit.id, hit))
    ranked.sort(key=lambda item: item[:2])
    return [Hit(id=hit.id, score=-negative, payload=hit.payload) for negative, _, hit in ranked]


# How many hits past `depth` the store is asked for, so that pages tied with the last one kept are all seen
# and the cut among them is by point id: which of several tied pages the store returns at its limit follows
# its internal layout, which differs between two ingestions of the same conversation.
TIE_MARGIN = 10


def user_weights(pages: Any, user_id: str, query: SparseVector) -> dict[int, float] | None:
    """The query's term weights with the user's IDF (`pages` is the PageStore), or None for a user whose
    pages do not all carry their terms yet (they keep the collection's IDF)."""
    counts = pages.term_counts(user_id, query.indices)
    return term_weights(query, *counts) if counts is not None else None


def user_bm25(pages: Any, user_id: str, query: SparseVector, where: Mapping[str, Any], depth: int,
              weights: Mapping[int, float] | None) -> list[Hit]:
    """The BM25 list over the user's pages with their payloads, `depth` long: the store's list (the same
    read as without user IDF) ranked again with `weights` (user_weights); with None, as the store ranks it."""
    found = pages.query(user_id, depth + TIE_MARGIN, sparse=query, where=dict(where), with_payload=True)
    found = sorted(found, key=lambda h: (-h.score, h.id))[:depth]
    return found if weights is None else rescore(found, weights)

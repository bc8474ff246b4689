"""The pages right before and after the strongest hits (multi-hop: the turn that asked, the turn that
answered), read partly beside the query's embedding.

Which hits are strongest is known only after the fusion, which needs the vector; but they are mostly among
the first pages of the BM25 list the early thread reads with the user's words (on the latency benchmark's
store, all five were within its first ten in 262 of 300 queries, within its first twenty in 298). So the
early thread reads the neighbours of those first pages (`prefetch`), and after the fusion only the
sequence numbers it did not ask for are read (`by_seq`). The pages found are those one read of all of
them finds: the same filter, and each sequence number is either asked for early or late.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from memoryos_workers.memory.pages import PageStore
from memoryos_workers.vectorstore import Hit

PREFETCH_HITS = 10  # the first BM25 pages whose neighbours the early thread reads


@dataclass(frozen=True)
class Near:
    """Pages read by sequence number under one filter: those asked for, and the pages found by number."""

    asked: frozenset[int] = frozenset()
    found: dict[int, Hit] = field(default_factory=dict)


def around(hits: Iterable[Hit]) -> list[int]:
    """The sequence numbers right before and after these pages (those with one)."""
    wanted: list[int] = []
    for hit in hits:
        seq = hit.payload.get("seq")
        if isinstance(seq, int):
            wanted += [seq - 1, seq + 1]
    return wanted


def prefetch(pages: PageStore, user_id: str, hits: Sequence[Hit], where: dict[str, Any],
             n: int = PREFETCH_HITS) -> Near:
    """The neighbours of the first `n` of these hits (with payloads), read under `where`."""
    return by_seq(pages, user_id, around(hits[:n]), where, Near())


def by_seq(pages: PageStore, user_id: str, wanted: Sequence[int], where: dict[str, Any], known: Near) -> Near:
    """The pages with these sequence numbers: those `known` asked for from it, the others in one read."""
    missing = sorted({s for s in wanted if s > 0} - known.asked)
    if not missing:
        return known
    found = dict(known.found)
    for hit in pages.query_seqs(user_id, missing, where):
        found[hit.payload.get("seq")] = hit
    return Near(known.asked | frozenset(missing), found)

"""How the ranked lists of a retrieval are fused: weighted reciprocal rank fusion (RRF)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter

from memoryos_workers.vectorstore import Hit


@dataclass(frozen=True)
class FusionParams:
    """How the ranked lists are fused: weighted RRF, score(page) = sum of weight / (rrf_k + rank).

    The weights were chosen on LoCoMo conv-26 and conv-30 together, before the rule that tunes on conv-26
    only and holds conv-30 out; what was tuned since says so where it is set. A small rrf_k (Qdrant's own
    default is 2) lets the top hits of each list lead; bench/retrieval.py measures it against the textbook
    60 as a variant on both conversations (BENCHMARKS section 4) instead of asserting a figure here. BM25
    weighs a little more than dense because questions name people, places and things. Not settings: they
    describe the algorithm, not a deployment.
    """

    rrf_k: float = 2.0
    segment_weight: float = 0.5  # pages inside the top segments (the paper's two-stage search)
    dense_weight: float = 1.0  # dense search over all the user's pages
    sparse_weight: float = 1.5  # BM25 over all the user's pages
    date_weight: float = 1.0  # dense search within a date the query names
    segment_candidates: int = 3  # segments read per top segment kept, to rerank them by Fscore
    depth: int = 20  # how deep each list looks (at least the pages asked for)
    candidate_tokens: int = 40  # with a budget and no top_k: one candidate page per this many tokens of it
    use_segments: bool = True
    use_dense: bool = True
    use_sparse: bool = True
    use_dates: bool = True
    store_hybrid: bool = False  # one dense+BM25 query fused inside the store (its RRF) instead of two lists
    # BM25 with the user's own IDF (retrieval/user_idf.py) instead of the collection's: the store's BM25 list
    # ranked again, and the turns Redis holds scored with the same weights. Chosen on conv-26 (2,000 tokens:
    # evidence 0.821 -> 0.833, answer in prompt 0.235 -> 0.243), checked on conv-30 (BENCHMARKS.md section 10).
    user_idf: bool = True
    # Multi-hop: the pages next to the strongest hits in their segment, as one more list; 0 = off. Tuned on
    # conv-26 (0.25-1.0: 1.0 best) and kept because conv-30 measured better with it, which makes conv-30
    # in-sample too (BENCHMARKS.md section 4).
    neighbour_weight: float = 1.0
    neighbour_hits: int = 5  # how many of the strongest hits lend their neighbours


DEFAULT_FUSION = FusionParams()


class RankFusion:
    """Weighted reciprocal rank fusion: score(d) = sum over lists of w / (k + rank). Pages are told apart by
    their point id (a hit without its payload has one), so lists can be fused before any payload is read."""

    def __init__(self, k: float) -> None:
        self.k = k
        self.scores: dict[str, float] = {}
        self.hits: dict[str, Hit] = {}
        self.found_by: dict[str, list[str]] = {}

    def add(self, name: str, hits: Iterable[Hit], weight: float, skip: set[str], *, scored: bool = True) -> None:
        """A page (by point id; `skip` holds point ids too) counts once per list, at its best rank. With
        `scored`, hits of equal score share a rank (1, 1, 3): the order a store returns equals in (the same
        words said on two days) must not decide which one leads; lists ranked by something other than their
        score (neighbours) pass False."""
        if weight <= 0:
            return
        rank = position = 0
        previous: float | None = None
        seen: set[str] = set()
        scores, kept, found_by, k = self.scores, self.hits, self.found_by, self.k
        for hit in hits:
            key = hit.id
            if key in skip or key in seen:
                continue
            seen.add(key)
            position += 1
            score = hit.score
            if not scored or previous is None or not math.isclose(score, previous, rel_tol=1e-9):
                rank = position
            previous = score
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
            known = kept.get(key)
            if known is None:
                kept[key] = hit
                found_by[key] = [name]
                continue
            if hit.payload and not known.payload:
                kept[key] = hit  # one that carries its payload wins
            found_by[key].append(name)

    def cut(self, n: int) -> list[str]:
        """The n best, best first, and every page tied with the n-th: the caller breaks ties by what the
        payloads say (the turn id), so which point id sorts first never decides what is kept."""
        # Best first; equal scores keep their insertion order (a reversed sort is stable too).
        ordered = sorted(self.scores.items(), key=itemgetter(1), reverse=True)
        if len(ordered) <= n:
            return [key for key, _ in ordered]
        floor = ordered[n - 1][1] if n > 0 else math.inf
        return [key for key, score in ordered if score >= floor]

    def top(self, n: int) -> list[tuple[str, float]]:
        return sorted(self.scores.items(), key=lambda kv: (-kv[1], kv[0]))[:n]

"""Pure logic of mid-term segmentation: checking the LLM's answer, the fallback, Fscore.

No services here: these functions take schemas objects and return values, so they are tested
directly and behave the same in every worker.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from memoryos_workers.llm.client import MalformedOutput
from schemas.memory import MAX_KEYWORDS, MAX_TOPICS, PageAnalysis, SegmentationResult, TopicAnalysis
from schemas.turns import Page

_WORD = re.compile(r"[^\W\d_][\w'-]{2,}", re.UNICODE)
STOPWORDS = frozenset(
    """the and for are but not you your yours with this that have has had was were will would can could
    should about what when where which who whom why how from into out over under again then there here
    they them their our ours she her hers him his its it's i'm i've you're don't didn't that's just also
    very really some any all each more most other such only own same than too been being does did doing
    because while after before above below between both few nor off once so yes yeah okay thanks thank
    maybe like get got one two lot much well good great nice sure know think want need going make
    user assistant""".split()
)


def check_segmentation(result: SegmentationResult, n_pages: int) -> None:
    """Raises MalformedOutput unless every page is analysed once and sits in exactly one topic.

    MemoryOS inserts a page once per theme, so a two-theme summary stores its pages twice; here an
    answer like that is refused and asked again, then replaced by the fallback.
    """
    indices = [p.index for p in result.pages]
    if sorted(indices) != list(range(n_pages)):
        raise MalformedOutput(f"pages analysed {sorted(indices)} instead of 0..{n_pages - 1}")
    if not 1 <= len(result.topics) <= MAX_TOPICS:
        raise MalformedOutput(f"{len(result.topics)} topics, expected 1..{MAX_TOPICS}")
    placed = [i for topic in result.topics for i in topic.page_indices]
    out_of_range = [i for i in placed if not 0 <= i < n_pages]
    if out_of_range:
        raise MalformedOutput(f"topic page indices out of range: {out_of_range}")
    if sorted(placed) != list(range(n_pages)):
        doubled = sorted(i for i, c in Counter(placed).items() if c > 1)
        missing = sorted(set(range(n_pages)) - set(placed))
        raise MalformedOutput(f"pages in several topics {doubled}, in none {missing}")
    if any(not topic.page_indices for topic in result.topics):
        raise MalformedOutput("a topic has no pages")
    if any(not topic.summary.strip() for topic in result.topics):
        raise MalformedOutput("a topic has an empty summary")


def normalise(result: SegmentationResult) -> SegmentationResult:
    """Tidy a checked answer: pages in index order, keywords lowercase, deduplicated and capped."""
    topics = [
        TopicAnalysis(
            theme=t.theme.strip()[:200],
            summary=t.summary.strip()[:2000],
            keywords=clean_keywords(t.keywords),
            page_indices=sorted(t.page_indices),
        )
        for t in result.topics
    ]
    pages = sorted(result.pages, key=lambda p: p.index)
    return SegmentationResult(pages=pages, topics=topics)


def clean_keywords(words: Sequence[str]) -> list[str]:
    out: list[str] = []
    for word in words:
        w = " ".join(word.lower().split())[:60]
        if w and w not in out:
            out.append(w)
    return out[:MAX_KEYWORDS]


def extract_keywords(texts: Sequence[str], limit: int = 8) -> list[str]:
    counts = Counter(
        w for text in texts for w in (m.group(0).lower() for m in _WORD.finditer(text)) if w not in STOPWORDS
    )
    return [w for w, _ in counts.most_common(limit)]


def fallback_segmentation(pages: Sequence[Page]) -> SegmentationResult:
    """One topic for the whole batch, built without the LLM. Chain summaries stay empty (the batch
    record says the fallback was taken) rather than holding an error text as memory content."""
    first, last = pages[0].timestamp, pages[-1].timestamp
    span = f"{first:%Y-%m-%d}" if first.date() == last.date() else f"{first:%Y-%m-%d} to {last:%Y-%m-%d}"
    keywords = extract_keywords([p.user_input + " " + p.agent_response for p in pages])
    opening = " / ".join(p.user_input.strip()[:120] for p in pages[:3] if p.user_input.strip())
    summary = f"Conversation ({span}, {len(pages)} turns) about {', '.join(keywords[:5]) or 'various things'}"
    if opening:
        summary += f". It opened with: {opening}"
    return SegmentationResult(
        pages=[PageAnalysis(index=i, continues_previous=i > 0, chain_summary="") for i in range(len(pages))],
        topics=[
            TopicAnalysis(
                theme=f"Conversation {span}",
                summary=summary[:2000],
                keywords=keywords,
                page_indices=list(range(len(pages))),
            )
        ],
    )


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

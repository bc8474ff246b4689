"""Pure logic of mid-term segmentation: checking the LLM's answer, the fallback, Fscore.

No services here: these functions take schemas objects and return values, so they are tested
directly and behave the same in every worker.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from memoryos_workers.llm.base import MalformedOutput
from memoryos_workers.memory.similarity import extract_keywords
from schemas.memory import MAX_KEYWORDS, MAX_TOPICS, PageAnalysis, SegmentationResult, TopicAnalysis
from schemas.turns import Page


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

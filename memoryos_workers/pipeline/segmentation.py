"""Pure logic of mid-term segmentation: the invariant of an analysis, the fallback, and putting the
analyses of several calls together (a batch split in parts, several batches in one call).

No services here: these functions take schemas objects and return values, so they are tested
directly and behave the same in every worker.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from memoryos_workers.llm.base import MalformedOutput
from memoryos_workers.memory.similarity import extract_keywords
from memoryos_workers.pipeline.answer_schemas import SegmentationRead
from schemas.memory import MAX_KEYWORDS, MAX_TOPICS, PageAnalysis, SegmentationResult, TopicAnalysis
from schemas.turns import Page


def check_segmentation(result: SegmentationResult, n_pages: int, max_topics: int | None = MAX_TOPICS) -> None:
    """Raises MalformedOutput unless every page is analysed once and sits in exactly one topic.

    MemoryOS inserts a page once per theme, so a two-theme summary stores its pages twice; here every
    analysis recorded on a batch has each page in exactly one topic. One call's answer has at most
    MAX_TOPICS topics; a batch analysed in several calls may have more (max_topics=None).
    """
    indices = [p.index for p in result.pages]
    if sorted(indices) != list(range(n_pages)):
        raise MalformedOutput(f"pages analysed {sorted(indices)} instead of 0..{n_pages - 1}")
    if not result.topics or (max_topics is not None and len(result.topics) > max_topics):
        raise MalformedOutput(f"{len(result.topics)} topics, expected 1..{max_topics or 'n'}")
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
            source=t.source,
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
        pages=[
            PageAnalysis(index=i, continues_previous=i > 0, chain_summary="", source="fallback")
            for i in range(len(pages))
        ],
        topics=[
            TopicAnalysis(
                theme=f"Conversation {span}",
                summary=summary[:2000],
                keywords=keywords,
                page_indices=list(range(len(pages))),
                source="fallback",
            )
        ],
    )


def from_read(read: SegmentationRead, pages: Sequence[Page]) -> SegmentationResult:
    """The read answer, its missing pages (if any) filled by one fallback topic over just those pages."""
    missing = read.missing
    result = SegmentationResult(pages=[read.pages[i] for i in sorted(read.pages)], topics=list(read.topics))
    if not missing:
        return result
    filled = fallback_segmentation([pages[i] for i in missing])
    for analysis, index in zip(filled.pages, missing, strict=True):
        previous_here = index - 1 in read.pages or (index > 0 and index - 1 in missing)
        result.pages.append(analysis.model_copy(update={"index": index, "continues_previous": previous_here}))
    (topic,) = filled.topics
    result.topics.append(topic.model_copy(update={"page_indices": missing}))
    result.pages.sort(key=lambda p: p.index)
    return result


def shift(result: SegmentationResult, offset: int) -> SegmentationResult:
    """The analysis of pages [offset, offset + n) of a larger list, indexed in that list."""
    return SegmentationResult(
        pages=[p.model_copy(update={"index": p.index + offset}) for p in result.pages],
        topics=[t.model_copy(update={"page_indices": [i + offset for i in t.page_indices]}) for t in result.topics],
    )


def combine(parts: Sequence[tuple[int, SegmentationResult]]) -> SegmentationResult:
    """One analysis from the analyses of consecutive parts (offset, analysis indexed from 0)."""
    shifted = [shift(result, offset) for offset, result in parts]
    return SegmentationResult(
        pages=sorted((p for r in shifted for p in r.pages), key=lambda p: p.index),
        topics=[t for r in shifted for t in r.topics],
    )


def split_by_batch(result: SegmentationResult, sizes: Sequence[int]) -> list[SegmentationResult]:
    """The analysis of several batches' pages, cut back into one analysis per batch. A topic that spans
    batches is described in each (the second merges into the segment the first made: Fscore is high)."""
    out, start = [], 0
    for size in sizes:
        end = start + size
        pages = [p.model_copy(update={"index": p.index - start}) for p in result.pages if start <= p.index < end]
        topics = []
        for topic in result.topics:
            members = [i - start for i in topic.page_indices if start <= i < end]
            if members:
                topics.append(topic.model_copy(update={"page_indices": members}))
        out.append(SegmentationResult(pages=pages, topics=topics))
        start = end
    return out

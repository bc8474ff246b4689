"""The LLM side of segmentation: pages sized into calls that fit the model, each answer read for its valid
part, what an answer missed asked again once (only that), and only what is still missing filled by the
fallback.

A prompt over the window (LLMContextOverflow) or an answer cut at the token limit (LLMTruncated) makes the
work smaller at once: the valid part of a cut answer is kept, and the rest goes in smaller calls. Neither is
a failure of the batch: segmentation never dead-letters for the LLM, and these never repeat a request as it
was.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memoryos_workers.llm.base import (
    LLM,
    LLMContextOverflow,
    LLMError,
    LLMNotConfigured,
    LLMRateLimited,
    LLMTruncated,
    MalformedOutput,
)
from memoryos_workers.llm.spend import Spend
from memoryos_workers.pipeline.answer_schemas import (
    AnyJSON,
    SegmentationRead,
    parse_partial,
    read_segmentation,
    segmentation_answer_tokens,
    segmentation_schema,
)
from memoryos_workers.pipeline.prompts import previous_link, segmentation_messages
from memoryos_workers.pipeline.segmentation import combine, fallback_segmentation, from_read
from schemas.memory import SegmentationResult, SegmentRef
from schemas.turns import Page

log = logging.getLogger("memoryos.segment_calls")
MAX_FOLLOW_UPS = 3  # calls over what an answer missed, each over a smaller span than the one before


@dataclass
class Analysed:
    result: SegmentationResult
    spend: Spend
    problems: list[str]


class SegmentCalls:
    def __init__(self, llm: LLM, completion_tokens: int) -> None:
        self.llm = llm
        self.max_tokens = completion_tokens

    # -- sizing -----------------------------------------------------------------------------------
    def fits(self, pages: Sequence[Page], previous: dict[str, Any] | None, nearby: Sequence[SegmentRef]) -> bool:
        """Whether one call over these pages fits: the prompt in the window, the answer in the budget."""
        if segmentation_answer_tokens(len(pages)) > self.max_tokens:
            return False
        prompt = self.llm.count_tokens(segmentation_messages(pages, previous, nearby))
        return prompt <= self.llm.prompt_budget(self.max_tokens)

    def how_many_fit(self, pages: Sequence[Page], previous: dict[str, Any] | None,
                     nearby: Sequence[SegmentRef]) -> int:
        """The longest prefix of `pages` one call can take (at least 1: a page too long alone still goes,
        and its overflow is handled like any other)."""
        n = 1
        while n < len(pages) and self.fits(pages[: n + 1], previous, nearby):
            n += 1
        return n

    # -- the analysis -----------------------------------------------------------------------------
    def analyse(self, pages: Sequence[Page], previous: dict[str, Any] | None,
                nearby: Sequence[SegmentRef]) -> Analysed:
        """Raises LLMNotConfigured (the caller takes the fallback) and LLMRateLimited (the batch waits)."""
        spend, problems = Spend(), []
        parts: list[tuple[int, SegmentationResult]] = []
        start = 0
        while start < len(pages):
            prev = previous if start == 0 else self._link(pages, parts, start)
            size = self.how_many_fit(pages[start:], prev, nearby)
            part = self._call(pages[start : start + size], prev, nearby, spend, problems, purpose="segmentation")
            parts.append((start, part))
            start += size
        return Analysed(combine(parts), spend, problems)

    def _call(
        self,
        pages: Sequence[Page],
        previous: dict[str, Any] | None,
        nearby: Sequence[SegmentRef],
        spend: Spend,
        problems: list[str],
        *,
        purpose: str,
        follow_ups: int = MAX_FOLLOW_UPS,
    ) -> SegmentationResult:
        messages = segmentation_messages(pages, previous, nearby)
        try:
            answer = self.llm.structured(
                messages, AnyJSON, name="segmentation", schema=segmentation_schema(len(pages)),
                max_tokens=self.max_tokens, check=lambda value: _usable(value, pages),
            )
        except (LLMNotConfigured, LLMRateLimited):
            raise
        except LLMContextOverflow as exc:
            spend.add(purpose, exc.usage)
            problems.append(f"context overflow over {len(pages)} pages")
            return self._smaller(pages, previous, nearby, spend, problems)
        except LLMTruncated as exc:
            spend.add(purpose, exc.usage)
            read = read_segmentation(parse_partial(exc.partial_text), pages, shown_texts(previous, nearby))
            problems.append(f"answer cut at the token limit after {len(read.pages)} of {len(pages)} pages")
            if not read.pages and len(pages) > 1:
                return self._smaller(pages, previous, nearby, spend, problems)
            return self._complete(read, pages, previous, nearby, spend, problems, follow_ups=follow_ups)
        except LLMError as exc:
            spend.add("fallback", exc.usage, first=False)
            problems.append(str(exc)[:300])
            log.warning("segmentation of %d pages fell back after LLM failures: %s", len(pages), exc)
            return fallback_segmentation(pages)
        spend.add(purpose, answer.usage)
        read = read_segmentation(answer.value.root, pages, shown_texts(previous, nearby))
        problems.extend(read.problems)
        return self._complete(read, pages, previous, nearby, spend, problems, follow_ups=follow_ups)

    def _smaller(self, pages: Sequence[Page], previous: dict[str, Any] | None, nearby: Sequence[SegmentRef],
                 spend: Spend, problems: list[str]) -> SegmentationResult:
        """Halves, at once; a single page is tried once more without the nearby segments, then the fallback."""
        if len(pages) == 1:
            if nearby:
                return self._call(pages, previous, [], spend, problems, purpose="retry")
            return fallback_segmentation(pages)
        half = len(pages) // 2
        first = self._call(pages[:half], previous, nearby, spend, problems, purpose="retry")
        link = previous_link(pages[half - 1], first.pages[-1].chain_summary if first.pages else "")
        second = self._call(pages[half:], link, nearby, spend, problems, purpose="retry")
        return combine([(0, first), (half, second)])

    def _complete(
        self,
        read: SegmentationRead,
        pages: Sequence[Page],
        previous: dict[str, Any] | None,
        nearby: Sequence[SegmentRef],
        spend: Spend,
        problems: list[str],
        *,
        follow_ups: int,
    ) -> SegmentationResult:
        """A whole answer as it is; otherwise another call over just the missing span (never the whole
        request again), while answers make progress (a cut answer is continued this way), and the fallback
        only for pages still missing after that."""
        missing = read.missing
        if not missing or follow_ups <= 0 or not read.pages:
            if missing and not read.pages:
                log.warning("no usable part in a segmentation answer over %d pages: %s", len(pages), read.problems)
            return from_read(read, pages)
        lo, hi = missing[0], missing[-1] + 1
        link = previous if lo == 0 else previous_link(pages[lo - 1], _chain(read, lo - 1))
        again = self._call(pages[lo:hi], link, nearby, spend, problems, purpose="retry", follow_ups=follow_ups - 1)
        for analysis in again.pages:
            index = analysis.index + lo
            if index in missing and analysis.source == "llm":
                read.pages[index] = analysis.model_copy(update={"index": index})
        taken = set(missing) - set(read.missing)
        for topic in again.topics:
            members = [i + lo for i in topic.page_indices if i + lo in taken]
            if members:
                read.topics.append(topic.model_copy(update={"page_indices": members}))
        return from_read(read, pages)

    @staticmethod
    def _link(pages: Sequence[Page], parts: Sequence[tuple[int, SegmentationResult]], start: int) -> dict[str, Any]:
        """The `previous` of a call that starts at `start`: the page before, with its chain summary."""
        offset, last = parts[-1]
        chain = next((p.chain_summary for p in last.pages if p.index + offset == start - 1), "")
        return previous_link(pages[start - 1], chain)


def shown_texts(previous: dict[str, Any] | None, nearby: Sequence[SegmentRef]) -> list[str]:
    """What a segmentation call was shown besides its pages, which a theme must not copy either."""
    texts = [str(previous.get("user", "")), str(previous.get("assistant", ""))] if previous else []
    return texts + [s.summary for s in nearby]


def _usable(value: AnyJSON, pages: Sequence[Page]) -> None:
    """An answer with no valid part is asked again whole (the client's retry): nothing of it was good."""
    read = read_segmentation(value.root, pages)
    if not read.pages:
        raise MalformedOutput(f"no usable part in the answer: {'; '.join(read.problems)}"[:300])


def _chain(read: SegmentationRead, index: int) -> str:
    page = read.pages.get(index)
    return page.chain_summary if page else ""

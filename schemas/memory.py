"""Mid-term memory: the analysis of a batch (what the segmentation call's answer is read into), and what
a segment is.

The answer's own shape (each page names its topic) is built per call in
memoryos_workers/pipeline/answer_schemas.py and read into these models, so the recorded analysis and
everything downstream keep this form whatever the wire shape; `source` says which parts came from the LLM.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Source = Literal["llm", "fallback"]

MAX_TOPICS = 4
MAX_KEYWORDS = 12


class PageAnalysis(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int = Field(description="The page's index in the batch, from 0.")
    continues_previous: bool = Field(
        description="True when this page continues the dialogue of the page before it (for index 0: the "
        "previous batch's last page)."
    )
    chain_summary: str = Field(
        description="Running summary of the dialogue chain this page belongs to, including this page (1-3 "
        "sentences)."
    )
    source: Source = "llm"


class TopicAnalysis(BaseModel):
    model_config = ConfigDict(extra="forbid")

    theme: str = Field(description="A short title for the topic (2-8 words).")
    summary: str = Field(description="What was said about this topic in these pages (1-4 sentences).")
    keywords: list[str] = Field(description="3-8 lowercase keywords or short phrases.")
    page_indices: list[int] = Field(description="Indices of the pages about this topic; every page in one topic.")
    source: Source = "llm"


class SegmentationResult(BaseModel):
    """A batch's analysis: chaining, meta summaries, topics and keywords together."""

    model_config = ConfigDict(extra="forbid")

    pages: list[PageAnalysis]
    topics: list[TopicAnalysis]


class BatchAnalysis(BaseModel):
    """Recorded on the batch before it is applied, so a retried task never calls the LLM again."""

    source: Source  # "llm" when any part came from the LLM; the parts say which (PageAnalysis.source)
    result: SegmentationResult
    reason: str = ""  # why the fallback was taken (for the whole batch or some pages)
    llm_model: str = ""
    prompt_version: str = ""
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    shared_with: list[str] = Field(default_factory=list)  # batches analysed in the same LLM call(s)

    @property
    def fallback_pages(self) -> list[int]:
        return [p.index for p in self.result.pages if p.source == "fallback"]


class SegmentRef(BaseModel):
    """A stored segment as the prompt and assignment see it."""

    segment_id: str
    theme: str
    summary: str
    keywords: list[str] = Field(default_factory=list)


class SegmentAssignment(BaseModel):
    """Where one topic of a batch goes; recorded on the batch before any write, so a replay writes
    the same absolute values (summary, keywords) instead of merging twice."""

    topic_index: int
    segment_id: str
    merged: bool
    fscore: float | None = None
    theme: str
    summary_parts: list[str]
    keywords: list[str]
    page_indices: list[int]
    source: Source | None = None  # the topic's (None in plans recorded before it was kept per topic)

    @property
    def summary(self) -> str:
        return " ".join(self.summary_parts)


class SegmentPlan(BaseModel):
    assignments: list[SegmentAssignment]

"""What retrieval returns: the memory context for one query, in-process or over RPC (so JSON-serialisable).

`RetrievedContext.to_prompt()` renders it the way MemoryOS's generation prompt uses it (schemas.prompt);
`to_prompt(max_tokens=N)` first cuts it to N tokens by value per token. A context that retrieval fitted to
a budget (`max_tokens` set) holds exactly what its prompt holds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .persona import KnowledgeEntry, UserProfile
from .prompt import fit, render
from .query import check_max_tokens
from .tokens import estimate_tokens
from .turns import SCHEMA_VERSION, Page


class RetrievedPage(BaseModel):
    """A mid-term page found for the query, with what the memory knows around it."""

    model_config = ConfigDict(extra="ignore")

    turn_id: str
    user_input: str
    agent_response: str
    timestamp: datetime
    metadata: dict[str, Any] = Field(default_factory=dict)
    score: float = 0.0  # fused rank score: higher is more relevant; comparable within one result only
    segment_id: str | None = None
    segment_summary: str = ""
    chain_summary: str = ""
    seq: int = 0
    theme: str = ""
    found_by: list[str] = Field(default_factory=list)  # searches that ranked it: segment, dense, bm25, date


class RetrievedContext(BaseModel):
    model_config = ConfigDict(extra="ignore")

    user_id: str
    assistant_id: str | None = None
    query: str
    short_term: list[Page] = Field(default_factory=list)
    pages: list[RetrievedPage] = Field(default_factory=list)
    user_profile: UserProfile | None = None
    user_knowledge: list[KnowledgeEntry] = Field(default_factory=list)
    assistant_knowledge: list[KnowledgeEntry] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    max_tokens: int = 0  # the budget the context was fitted to; 0 = not fitted
    # True when the full answer did not arrive by the caller's deadline: only what Redis holds (short-term
    # and pending turns, the last known profile), no mid-term pages and no facts; the reason says why.
    degraded: bool = False
    degraded_reason: str = ""
    schema_version: int = SCHEMA_VERSION

    def turn_ids(self) -> list[str]:
        """Every turn the context holds: short-term first, then the retrieved pages."""
        return [p.turn_id for p in self.short_term] + [p.turn_id for p in self.pages]

    def to_prompt(self, max_tokens: int | None = None) -> str:
        """The context block of the paper's generation prompt (the caller adds the query and the task);
        with `max_tokens`, only what fits that many tokens (schemas.tokens), chosen by value per token."""
        return render(self if max_tokens is None else self.fit(max_tokens))

    def fit(self, max_tokens: int) -> RetrievedContext:
        """This context cut to what a prompt of `max_tokens` tokens holds (schemas.prompt.fit)."""
        if check_max_tokens(max_tokens) == 0:
            return self
        return fit(self, max_tokens)

    def prompt_tokens(self) -> int:
        """What `to_prompt()` costs, by the estimate the LLM layer uses."""
        return estimate_tokens(self.to_prompt())

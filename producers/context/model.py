"""What retrieval returns: the memory context for one query, in-process or over RPC (so JSON-serialisable).

`to_prompt()` renders it the way MemoryOS's generation prompt uses it (render.py); `fit(N)` cuts it to N
tokens by value per token (fit.py), and `to_prompt(max_tokens=N)` does both. A context that retrieval
fitted to a budget (`max_tokens` set) holds exactly what its prompt holds.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from producers.context.fit import DEFAULT_PACKING, PackingParams, fit
from producers.context.parts import Parts, RetrievedPage
from producers.context.render import render
from schemas.persona import KnowledgeEntry, UserProfile
from schemas.query import check_max_tokens
from schemas.tokens import estimate_tokens
from schemas.turns import SCHEMA_VERSION, Page


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

    def parts(self) -> Parts:
        return Parts(self.query, self.short_term, self.pages, self.user_profile, self.user_knowledge,
                     self.assistant_knowledge)

    def to_prompt(self, max_tokens: int | None = None) -> str:
        """The context block of the paper's generation prompt (the caller adds the query and the task);
        with `max_tokens`, only what fits that many tokens (schemas.tokens), chosen by value per token."""
        return render((self if max_tokens is None else self.fit(max_tokens)).parts())

    def fit(self, max_tokens: int, params: PackingParams = DEFAULT_PACKING, max_pages: int | None = None,
            ) -> RetrievedContext:
        """This context cut to what a prompt of `max_tokens` tokens holds (0: as it is), with at most
        `max_pages` pages besides the recent dialogue."""
        if check_max_tokens(max_tokens) == 0:
            return self
        chosen: dict[str, Any] = fit(self.parts(), max_tokens, params, max_pages).fields()
        return self.model_copy(update={**chosen, "max_tokens": max_tokens})

    def prompt_tokens(self) -> int:
        """What `to_prompt()` costs, by the same estimate as the budget (schemas.tokens)."""
        return estimate_tokens(self.to_prompt())

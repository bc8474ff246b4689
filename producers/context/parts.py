"""What a memory context is made of, as plain data: the mid-term page as retrieval found it, and the parts
of a context (recent dialogue, pages, profile, facts) that rendering and fitting work on. Both modules
take and return `Parts`, so neither needs the `RetrievedContext` model, which builds on them."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.persona import KnowledgeEntry, UserProfile
from schemas.turns import Page


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


@dataclass(frozen=True)
class Parts:
    query: str = ""
    short_term: list[Page] = field(default_factory=list)
    pages: list[RetrievedPage] = field(default_factory=list)
    user_profile: UserProfile | None = None
    user_knowledge: list[KnowledgeEntry] = field(default_factory=list)
    assistant_knowledge: list[KnowledgeEntry] = field(default_factory=list)

    def fields(self) -> dict[str, Any]:
        """The parts by name (the `RetrievedContext` fields they are), the query left out."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "query"}

"""What a memory context is made of, as plain data: the mid-term page as retrieval found it, and the parts
of a context (recent dialogue, pages, profile, facts) that rendering and fitting work on. Both modules
take and return `Parts`, so neither needs the `RetrievedContext` model, which builds on them.

A retrieval hands the fitting about three times the pages it keeps, so it passes them as `PageCandidate`s
(plain records, a few microseconds each) and only the pages kept become `RetrievedPage` models (a
validated model costs about 16 microseconds: building all 50 was a third of a retrieval's page stage)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

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


_TIMESTAMP = TypeAdapter(datetime)
# Every candidate page's timestamp is parsed for each retrieval that finds it, and the early thread parses
# those of the BM25 list beside the embedding (memoryos_workers/retrieval/warm.py): the request's thread
# then finds them here.
_parse_stored = lru_cache(maxsize=8192)(_TIMESTAMP.validate_python)


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which made building the ~50
# candidates of a retrieval take twice as long (3.0 against 1.7 microseconds each); nothing changes one.
@dataclass(slots=True)
class PageCandidate:
    """A page retrieval found, before the fitting decides whether it is kept: the fields of `RetrievedPage`
    as plain data (its timestamp parsed as the model parses it, so a page renders the same either way),
    plus the stems stored with its texts: the page's (schemas/words.py `stored_stems`, None when written
    before or under another version) and its topic's and chain's summaries' as stored (`text_stems`, checked
    against their text by `stems_for` when the fitting asks for them: for the few pages it keeps)."""

    turn_id: str
    user_input: str
    agent_response: str
    timestamp: datetime
    metadata: dict[str, Any]
    score: float
    segment_id: str | None
    segment_summary: str
    chain_summary: str
    seq: int
    theme: str
    found_by: list[str]
    stems: str | None = None
    segment_stems: str | None = None
    chain_stems: str | None = None

    @staticmethod
    def parse_time(value: Any) -> datetime:
        """A stored timestamp as `RetrievedPage` validates it (its time zone's name included); a stored
        string is parsed once while it stays in the cache (a datetime is immutable, so sharing it is safe)."""
        return _parse_stored(value) if isinstance(value, str) else _TIMESTAMP.validate_python(value)

    def page(self, segment_summary: str | None = None, chain_summary: str | None = None) -> RetrievedPage:
        """The model of this page; the summaries given replace its own (the fitting blanks those not kept).
        Every field is already of its type, so it is built without validating again (`_built`)."""
        return _built({
            "turn_id": self.turn_id, "user_input": self.user_input, "agent_response": self.agent_response,
            "timestamp": self.timestamp, "metadata": self.metadata, "score": self.score,
            "segment_id": self.segment_id,
            "segment_summary": self.segment_summary if segment_summary is None else segment_summary,
            "chain_summary": self.chain_summary if chain_summary is None else chain_summary,
            "seq": self.seq, "theme": self.theme, "found_by": self.found_by,
        })


def _built(values: dict[str, Any]) -> RetrievedPage:
    """`RetrievedPage.model_construct(**values)` given every field, in their order: the same instance state
    (its fields, all of them set, no extra, no private), without model_construct's walk over each field's
    aliases and defaults, which was a fifth of a fit's time (a fit builds about 19 pages)."""
    page = RetrievedPage.__new__(RetrievedPage)
    object.__setattr__(page, "__dict__", values)
    object.__setattr__(page, "__pydantic_fields_set__", set(values))
    object.__setattr__(page, "__pydantic_extra__", None)
    object.__setattr__(page, "__pydantic_private__", None)
    return page


#: A page as rendering and fitting read it: both use only the fields the two share.
AnyPage = RetrievedPage | PageCandidate


@dataclass(frozen=True)
class Parts:
    query: str = ""
    short_term: list[Page] = field(default_factory=list)
    pages: list[RetrievedPage] | list[PageCandidate] = field(default_factory=list)  # candidates: before fitting
    user_profile: UserProfile | None = None
    user_knowledge: list[KnowledgeEntry] = field(default_factory=list)
    assistant_knowledge: list[KnowledgeEntry] = field(default_factory=list)

    def fields(self) -> dict[str, Any]:
        """The parts by name (the `RetrievedContext` fields they are), the query left out."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "query"}

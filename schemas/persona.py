"""Long-term persona memory (paper section 3.2-3.3): the user profile and the knowledge bases.

The LLM output models are strict-structured-output friendly (all fields required); dates are
strings, empty when the dialogue gives none.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

TraitLevel = Literal["low", "medium", "high"]


class TraitRevision(BaseModel):
    """What a trait was before evidence against it changed it: kept with the trait (and exported), so a
    revised trait still says what it was and which turns had shown that."""

    at: float = Field(description="Dialogue time of the evidence that changed it.")
    by_turn: str = Field("", description="The turn whose evidence changed it.")
    dimension: str
    level: TraitLevel
    evidence: str
    evidence_turns: list[str] = Field(default_factory=list)


class Trait(BaseModel):
    """One dimension of the user's profile (e.g. 'interest: hiking', 'communication: concise'), with the
    turns that showed it and when it was last seen. Profiles stored before evidence was kept load with
    empty evidence and no times."""

    model_config = ConfigDict(extra="forbid")

    dimension: str = Field(description="Name of the trait, e.g. 'interest: hiking' or 'diet: vegetarian'.")
    level: TraitLevel
    evidence: str = Field(description="What in the dialogue shows it (one sentence).")
    evidence_turns: list[str] = Field(default_factory=list, description="Turn ids that showed it (the latest).")
    first_seen: float | None = Field(None, description="Dialogue time of the first evidence.")
    last_seen: float | None = Field(None, description="Dialogue time of the latest evidence.")
    revisions: list[TraitRevision] = Field(default_factory=list, description="What it was before (the latest).")


class TraitUpdate(BaseModel):
    """A trait as the persona call answers it: `id` names the shown trait it restates or revises ("" for a
    new one), `page` the page that shows it. Both are absent in older answers."""

    model_config = ConfigDict(extra="forbid")

    dimension: str
    level: TraitLevel
    evidence: str
    id: str = ""
    page: int | None = None


class ProfileUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    summary: str = Field(description="A short free-text portrait of the user (2-5 sentences).")
    traits: list[TraitUpdate]


class Fact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="One self-contained fact, e.g. 'Maya's cat is called Pimenta'.")
    date: str = Field(description="ISO date the dialogue gives for the fact, or empty.")
    # Read from the answer when present (the persona schema asks for them); absent in older answers.
    page: int | None = Field(None, description="Index of the page the fact comes from.")
    quote: str = Field("", description="The user's own words the fact rests on, copied from one of the user's lines.")
    supersedes: list[str] = Field(default_factory=list, description="Shown fact ids this fact replaces.")
    confirms: list[str] = Field(default_factory=list, description="Shown fact ids this fact restates.")


class PersonaExtraction(BaseModel):
    """One call per drain: the updated profile plus new user facts and new assistant facts."""

    model_config = ConfigDict(extra="forbid")

    profile: ProfileUpdate
    user_facts: list[Fact]
    assistant_facts: list[Fact]
    retired: list[str] = Field(default_factory=list, description="Shown fact ids no longer true, not replaced.")


class UserProfile(BaseModel):
    user_id: str
    summary: str = ""
    traits: list[Trait] = Field(default_factory=list)
    updated_at: float = 0.0
    llm_model: str = ""
    prompt_version: str = ""

    def render(self) -> str:
        lines = [self.summary] if self.summary else []
        lines += [f"- {t.dimension}: {t.level} ({t.evidence})" for t in self.traits]
        return "\n".join(lines)


FactStatus = Literal["current", "superseded", "retired", "deleted"]


class FactChange(BaseModel):
    """One change to a fact, kept with it (and exported): who made it and when."""

    at: float
    action: Literal["extracted", "added", "confirmed", "superseded", "retired", "corrected", "pinned", "unpinned",
                    "deleted"]
    by: str = Field(description="'llm' or the person/API key that made the change.")
    detail: str = ""


class KnowledgeEntry(BaseModel):
    """A fact with its time: valid_from is when it became true (a date the dialogue states, else its source
    turns' time); once replaced, valid_until and superseded_by say until when and by which fact. Payloads
    written before these fields existed read as current facts valid from their creation."""

    entry_id: str
    kind: Literal["user", "assistant"]
    text: str
    date: str = ""
    user_id: str  # the user whose dialogue the fact came from
    assistant_id: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    score: float | None = None
    fact_id: str = Field("", description="Short stable id of the fact (the API's and the LLM's handle).")
    status: FactStatus = "current"
    valid_from: float | None = Field(None, description="Unix time the fact became true.")
    valid_until: float | None = Field(None, description="Unix time it stopped holding (superseded/retired).")
    superseded_by: str | None = Field(None, description="fact_id of the fact that replaced it.")
    source_turns: list[str] = Field(default_factory=list)
    recorded_at: float = 0.0
    confirmed_at: float = 0.0
    pinned: bool = False
    origin: Literal["llm", "person"] = "llm"
    origin_by: str | None = Field(None, description="Who added it, for a person's fact (key or person).")
    changes: list[FactChange] = Field(default_factory=list)

    def window(self) -> str:
        """When the fact held, to the month: "since 2023-05", or "2022-01 to 2023-05" once replaced."""
        start = month(self.valid_from)
        if self.valid_until is None:
            return f"since {start}" if start else ""
        return f"{start or '?'} to {month(self.valid_until)}"

    @property
    def current(self) -> bool:
        return self.status == "current"

    def held_during(self, since: float | None, until: float | None) -> bool:
        """Whether the fact's window [valid_from, valid_until) meets [since, until]."""
        start = self.valid_from if self.valid_from is not None else self.recorded_at or self.created_at
        end = self.valid_until
        return (until is None or start <= until) and (since is None or end is None or end > since)


@lru_cache(maxsize=4096)
def month(t: float | None) -> str:
    """Cached: every fitted context labels each of its facts by when it held, a strftime per label, while a
    user's facts keep the same few times."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m") if t else ""


class Persona(BaseModel):
    """The long-term persona of one user as the apps read it: the profile and both knowledge bases."""

    profile: UserProfile | None = None
    user_knowledge: list[KnowledgeEntry] = Field(default_factory=list)
    assistant_knowledge: list[KnowledgeEntry] = Field(default_factory=list)

"""Long-term persona memory (paper section 3.2-3.3): the user profile and the knowledge bases.

The LLM output models are strict-structured-output friendly (all fields required); dates are
strings, empty when the dialogue gives none.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

TraitLevel = Literal["low", "medium", "high"]


class Trait(BaseModel):
    """One dimension of the user's profile (e.g. 'interest: hiking', 'communication: concise')."""

    model_config = ConfigDict(extra="forbid")

    dimension: str = Field(description="Name of the trait, e.g. 'interest: hiking' or 'diet: vegetarian'.")
    level: TraitLevel
    evidence: str = Field(description="What in the dialogue shows it (one sentence).")


class ProfileUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    summary: str = Field(description="A short free-text portrait of the user (2-5 sentences).")
    traits: list[Trait]


class Fact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="One self-contained fact, e.g. 'Maya's cat is called Pimenta'.")
    date: str = Field(description="ISO date the dialogue gives for the fact, or empty.")


class PersonaExtraction(BaseModel):
    """One call per drain: the updated profile plus new user facts and new assistant facts."""

    model_config = ConfigDict(extra="forbid")

    profile: ProfileUpdate
    user_facts: list[Fact]
    assistant_facts: list[Fact]


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


class KnowledgeEntry(BaseModel):
    entry_id: str
    kind: Literal["user", "assistant"]
    text: str
    date: str = ""
    user_id: str  # the user whose dialogue the fact came from
    assistant_id: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    score: float | None = None


class Persona(BaseModel):
    """The long-term persona of one user as the apps read it: the profile and both knowledge bases."""

    profile: UserProfile | None = None
    user_knowledge: list[KnowledgeEntry] = Field(default_factory=list)
    assistant_knowledge: list[KnowledgeEntry] = Field(default_factory=list)

"""A user's own settings: the knobs a MemoryOS object takes per instance (capacities, thresholds).

Stored in Redis (the user's `knobs` hash) and honoured over the global settings by the publish script
and by workers, so two users of one deployment can have different capacities, as two MemoryOS
objects can. Unset knobs fall back to the deployment's settings.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .settings import Settings, check_zone


class UserKnobs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    short_term_capacity: int | None = Field(None, ge=1, le=10_000)
    mid_term_capacity: int | None = Field(None, ge=1)
    long_term_knowledge_capacity: int | None = Field(None, ge=1)
    retrieval_queue_capacity: int | None = Field(None, ge=1)
    mid_term_heat_threshold: float | None = None
    mid_term_similarity_threshold: float | None = None
    timezone: str | None = None  # the user's own zone, over MEMORYOS_TIMEZONE: how "yesterday" is read

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return None if value is None else check_zone(value)

    @classmethod
    def from_settings(cls, settings: Settings) -> UserKnobs:
        return cls.model_validate({name: getattr(settings, name) for name in cls.model_fields})

    @classmethod
    def from_redis(cls, stored: Mapping[str, str]) -> UserKnobs:
        """Unknown fields (a newer writer) are ignored rather than failing a worker."""
        return cls.model_validate({k: v for k, v in stored.items() if k in cls.model_fields})

    def to_redis(self) -> dict[str, str]:
        return {k: repr(v) if isinstance(v, float) else str(v) for k, v in self.model_dump(exclude_none=True).items()}

    def apply(self, settings: Settings) -> Settings:
        """The user's effective settings: theirs where set, the deployment's elsewhere."""
        overrides = self.model_dump(exclude_none=True)
        return settings.model_copy(update=overrides) if overrides else settings

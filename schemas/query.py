"""What a retrieval may be asked: `RetrievalRequest`, the one model that travels from every app (HTTP,
MCP, the `Memoryos` class, `producers.retrieve`, `in_process.retrieve`) to the retriever and over the
wire, checked the same way on both sides of the RPC (ValueError names the field): the user, the query,
how many pages, the token budget, the time the question is asked at, filters on the turns (a time range,
the assistant, exact metadata values) and, over RPC, the deadline.

A new retrieval option is a field of `RetrievalRequest`: every app takes its options from this model.

Times without a zone are kept without one here: the worker reads them in the user's time zone (the
per-user `timezone` knob, else MEMORYOS_TIMEZONE), which only it knows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from .turns import DEFAULT_MAX_TEXT_CHARS, ID_PATTERN, check_id, check_text

MAX_TOP_K = 100
MIN_CONTEXT_TOKENS = 100  # the notice and section headers alone take about 60
MAX_CONTEXT_TOKENS = 1_000_000
FILTER_FIELDS = ("since", "until", "assistant_id", "metadata")
_METADATA_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # no dots: a dot is a path in the store's payload keys

MetadataValue = str | int | bool
OnDeadline = Literal["degrade", "raise"]


class RetrievalFilters(BaseModel):
    """Only turns that match all of these are retrieved (pages, short-term and pending turns alike).

    since/until bound the turn's timestamp, both inclusive; a date alone means the whole day."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    since: datetime | None = None
    until: datetime | None = None
    assistant_id: str | None = None
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)

    def is_empty(self) -> bool:
        return self.since is None and self.until is None and self.assistant_id is None and not self.metadata


# The JSON Schema of what parse_filters accepts, for API documents (the checks stay parse_filters').
FILTERS_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "since": {"type": ["string", "null"], "description": "ISO 8601 date-time, or a date (its first instant)."},
        "until": {"type": ["string", "null"], "description": "ISO 8601 date-time, or a date (its last instant); "
                  "not before since."},
        "assistant_id": {"type": ["string", "null"], "pattern": ID_PATTERN},
        "metadata": {
            "type": ["object", "null"],
            "description": "Exact values of the turns' metadata.",
            "propertyNames": {"pattern": _METADATA_KEY.pattern},
            "additionalProperties": {"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer"},
                                               {"type": "boolean"}]},
        },
    },
}


def check_top_k(name: str, value: Any) -> int:
    """How many results a caller may ask for (retrieval's bound); ValueError naming the field."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOP_K:
        raise ValueError(f"{name}: must be an integer from 1 to {MAX_TOP_K}, got {value!r}")
    return value


def check_max_tokens(value: Any) -> int | None:
    """None (the MEMORYOS_CONTEXT_MAX_TOKENS default), 0 (no budget) or a budget the headers fit in."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or (
        value != 0 and not MIN_CONTEXT_TOKENS <= value <= MAX_CONTEXT_TOKENS
    ):
        raise ValueError(
            f"max_tokens: must be 0 (no budget) or an integer from {MIN_CONTEXT_TOKENS} to {MAX_CONTEXT_TOKENS:,}, "
            f"got {value!r}"
        )
    return value


def parse_now(value: Any) -> datetime | None:
    """The time the question is asked at: a datetime or an ISO 8601 string (None: the current time)."""
    if value is None:
        return None
    return _datetime("now", value)


def parse_filters(value: Any) -> RetrievalFilters | None:
    """A mapping of since, until, assistant_id and metadata, or RetrievalFilters; None when it filters nothing."""
    if value is None:
        return None
    if isinstance(value, RetrievalFilters):
        value = value.model_dump(exclude_defaults=True)
    if not isinstance(value, Mapping):
        raise ValueError(f"filters: must be a mapping of {', '.join(FILTER_FIELDS)}, not {type(value).__name__}")
    unknown = sorted(str(k) for k in value if k not in FILTER_FIELDS)
    if unknown:
        raise ValueError(f"filters.{unknown[0]}: unknown filter; use {', '.join(FILTER_FIELDS)}")
    since = _bound("since", value.get("since"), end=False)
    until = _bound("until", value.get("until"), end=True)
    if since is not None and until is not None and (since.tzinfo is None) == (until.tzinfo is None) and since > until:
        raise ValueError(f"filters.until: {until.isoformat()} is before filters.since ({since.isoformat()})")
    assistant_id = value.get("assistant_id")
    check_id("filters.assistant_id", assistant_id, required=False)
    filters = RetrievalFilters(since=since, until=until, assistant_id=assistant_id,
                               metadata=_metadata(value.get("metadata")))
    return None if filters.is_empty() else filters


def _bound(name: str, value: Any, *, end: bool) -> datetime | None:
    """A date alone is the whole day: its first instant for since, its last for until."""
    if value is None:
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        day = value
    elif isinstance(value, str) and len(value.strip()) == 10:
        try:
            day = date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"filters.{name}: {value!r} is not an ISO 8601 date or date-time") from None
    else:
        return _datetime(f"filters.{name}", value)
    if end:
        return datetime.combine(day, time.min) + timedelta(days=1) - timedelta(microseconds=1)
    return datetime.combine(day, time.min)


def _datetime(name: str, value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
        raise ValueError(f"{name}: {value[:64]!r} is not an ISO 8601 date-time (e.g. 2025-05-01T14:30:00+02:00)")
    raise ValueError(f"{name}: must be a datetime or an ISO 8601 string, not {type(value).__name__}")


def _metadata(value: Any) -> dict[str, MetadataValue]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"filters.metadata: must be a mapping of keys to exact values, not {type(value).__name__}")
    out: dict[str, MetadataValue] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _METADATA_KEY.fullmatch(key):  # match(): "$" let "k\n" in
            raise ValueError(f"filters.metadata: key {key!r} must be 1-64 letters, digits, '_' or '-'")
        if not isinstance(item, (str, int)) or (isinstance(item, str) and not item):
            raise ValueError(
                f"filters.metadata.{key}: must be a non-empty string, an integer or a boolean (an exact value), "
                f"got {item!r}"
            )
        out[key] = item
    return out


class Defaults(Protocol):
    """Where a request's unset options come from: schemas.settings.Settings (which imports this module)."""

    retrieval_top_pages: int | None
    context_max_tokens: int
    max_text_chars: int


WIRE_FIELDS = ("user_id", "query")  # sent positionally over RPC (the task's args), the options as kwargs
RPC_ONLY = ("deadline_ms", "on_deadline")  # the caller's side of the lane; the request frame carries them


class RetrievalRequest(BaseModel):
    """One retrieval: what every app asks and what the retriever answers. Build it with `of()` (keyword
    arguments, ValueError naming the first bad field) or `model_validate` (pydantic's ValidationError)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    # json_schema_extra says in the JSON Schema what the checks below accept (for API documents); the checks
    # decide, and name the field when they refuse.
    user_id: str = Field(description="The user whose memory is read.", json_schema_extra={"pattern": ID_PATTERN})
    query: str = Field(
        description="The user's new message, or what to look up: not blank, at most MEMORYOS_MAX_TEXT_CHARS "
        "characters, no NUL.", json_schema_extra={"minLength": 1, "pattern": r"\S"},
    )
    assistant_id: str | None = Field(
        None, description="Whose assistant facts to include (default: the filter's assistant, else the deployment's).",
        json_schema_extra={"anyOf": [{"type": "string", "pattern": ID_PATTERN}, {"type": "null"}]},
    )
    top_k: int | None = Field(
        None, description=f"At most this many mid-term pages, 1-{MAX_TOP_K} (default MEMORYOS_RETRIEVAL_TOP_PAGES, "
        "else as many as the budget holds).",
        json_schema_extra={"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_TOP_K}, {"type": "null"}]},
    )
    max_tokens: int | None = Field(
        None, description="Token budget of the context (default MEMORYOS_CONTEXT_MAX_TOKENS; 0: no budget).",
        json_schema_extra={"anyOf": [{"type": "integer", "enum": [0]}, {"type": "null"}, {
            "type": "integer", "minimum": MIN_CONTEXT_TOKENS, "maximum": MAX_CONTEXT_TOKENS}]},
    )
    now: datetime | None = Field(
        None, description="The question's time, ISO 8601 (default: now), for 'yesterday' and the like.",
        json_schema_extra={"anyOf": [{"type": "string"}, {"type": "null"}]},
    )
    filters: RetrievalFilters | None = Field(
        None, description="since, until (ISO 8601), assistant_id, metadata (exact values) narrowing the search.",
        json_schema_extra={"anyOf": [FILTERS_JSON_SCHEMA, {"type": "null"}]},
    )
    fact_history: bool = Field(
        False, description="Also return facts no longer true (replaced or retired), each with the window it "
        "held; with filters.since/until, facts are those that held in that window, current or not.",
    )
    deadline_ms: float | None = Field(
        None, description="Over RPC: milliseconds the full answer may take (default MEMORYOS_RETRIEVAL_DEADLINE_MS); "
        "past it the answer is what Redis holds, marked degraded. In-process retrieval has no queue to wait in.",
        json_schema_extra={"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}]},
    )
    on_deadline: OnDeadline | None = Field(
        None, description="Over RPC: 'degrade' (default MEMORYOS_RETRIEVAL_ON_DEADLINE) or 'raise' RetrievalTimeout."
    )

    @field_validator("user_id", mode="before")
    @classmethod
    def _user(cls, value: Any) -> str:
        return check_id("user_id", value)  # type: ignore[return-value]  # required: never None

    @field_validator("assistant_id", mode="before")
    @classmethod
    def _assistant(cls, value: Any) -> str | None:
        return check_id("assistant_id", value, required=False)

    @field_validator("query", mode="before")
    @classmethod
    def _query(cls, value: Any, info: ValidationInfo) -> str:
        return check_text("query", value, (info.context or {}).get("max_text_chars", DEFAULT_MAX_TEXT_CHARS))

    @field_validator("top_k", mode="before")
    @classmethod
    def _top_k(cls, value: Any) -> int | None:
        return None if value is None else check_top_k("top_k", value)

    @field_validator("max_tokens", mode="before")
    @classmethod
    def _max_tokens(cls, value: Any) -> int | None:
        return check_max_tokens(value)

    @field_validator("fact_history", mode="before")
    @classmethod
    def _fact_history(cls, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError("fact_history: must be true or false")
        return value

    @field_validator("now", mode="before")
    @classmethod
    def _now(cls, value: Any) -> datetime | None:
        return parse_now(value)

    @field_validator("filters", mode="before")
    @classmethod
    def _filters(cls, value: Any) -> RetrievalFilters | None:
        return parse_filters(value)

    @field_validator("deadline_ms", mode="before")
    @classmethod
    def _deadline(cls, value: Any) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"deadline_ms: must be a positive number, got {value!r}")
        return float(value)

    @field_validator("on_deadline", mode="before")
    @classmethod
    def _on_deadline(cls, value: Any) -> str | None:
        if value is not None and value not in ("degrade", "raise"):
            raise ValueError(f"on_deadline: must be 'degrade' or 'raise', got {value!r}")
        return value  # type: ignore[no-any-return]

    @classmethod
    def of(cls, user_id: Any, query: Any, *, max_text_chars: int = DEFAULT_MAX_TEXT_CHARS, **options: Any,
           ) -> RetrievalRequest:
        """From keyword arguments (the Python entry points); ValueError naming the first bad field."""
        unknown = sorted(set(options) - set(cls.model_fields) | set(options) & set(WIRE_FIELDS))
        if unknown:
            raise ValueError(f"{unknown[0]}: not a retrieval option; use {', '.join(cls.options())}")
        return cls.checked({"user_id": user_id, "query": query, **options}, max_text_chars=max_text_chars)

    @classmethod
    def checked(cls, data: Any, *, max_text_chars: int = DEFAULT_MAX_TEXT_CHARS) -> RetrievalRequest:
        """`model_validate`, with the first problem raised as a ValueError that names its field."""
        try:
            return cls.model_validate(data, context={"max_text_chars": max_text_chars})
        except ValidationError as exc:
            raise ValueError(first_problem(exc)) from None

    @classmethod
    def options(cls) -> list[str]:
        """The option names (every field but the user and the query)."""
        return [name for name in cls.model_fields if name not in WIRE_FIELDS]

    @classmethod
    def from_wire(cls, args: list[Any], kwargs: dict[str, Any], *, max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
                  ) -> RetrievalRequest:
        """A request as the retrieval task receives it: [user_id, query] and the options (see `wire`)."""
        if len(args) != 2:
            raise ValueError(f"args: a retrieval takes [user_id, query], got {len(args)} value(s)")
        return cls.of(args[0], args[1], max_text_chars=max_text_chars, **kwargs)

    def wire(self) -> tuple[list[Any], dict[str, Any]]:
        """The task's args and kwargs: JSON values, unset options left out, the caller-side ones too."""
        options = self.model_dump(mode="json", exclude_none=True, exclude_defaults=True,
                                  exclude={*WIRE_FIELDS, *RPC_ONLY})
        return [self.user_id, self.query], options

    def resolved(self, settings: Defaults) -> RetrievalRequest:
        """Defaults from `settings` filled in (the caller's: over RPC they are resolved before sending) and
        the query checked against MEMORYOS_MAX_TEXT_CHARS."""
        check_text("query", self.query, settings.max_text_chars)
        return self.model_copy(update={
            "top_k": settings.retrieval_top_pages if self.top_k is None else self.top_k,
            "max_tokens": settings.context_max_tokens if self.max_tokens is None else self.max_tokens,
        })

    @property
    def budget(self) -> int:
        """The token budget as a number (0: none); call on a resolved request."""
        return int(self.max_tokens or 0)


def first_problem(exc: ValidationError) -> str:
    """pydantic's first error as "field: message" (our checks already start with their field)."""
    err = exc.errors(include_input=False)[0]
    message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    field = ".".join(str(part) for part in err.get("loc", ()))
    if not field or message.startswith(f"{field}:") or message.split(":", 1)[0].startswith(field):
        return message
    if err.get("type") == "extra_forbidden":
        return f"{field}: not a retrieval option; use {', '.join(RetrievalRequest.options())}"
    return f"{field}: {message}"

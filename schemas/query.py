"""What a retrieval may be asked, checked the same way on both sides of the RPC (ValueError names the
field): the user, the query, how many pages, the token budget, the time the question is asked at and
filters on the turns (a time range, the assistant, exact metadata values).

Times without a zone are kept without one here: the worker reads them in the user's time zone (the
per-user `timezone` knob, else MEMORYOS_TIMEZONE), which only it knows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .turns import DEFAULT_MAX_TEXT_CHARS, ID_PATTERN, check_id, check_text

MAX_TOP_K = 100
MIN_CONTEXT_TOKENS = 100  # the notice and section headers alone take about 60
MAX_CONTEXT_TOKENS = 1_000_000
FILTER_FIELDS = ("since", "until", "assistant_id", "metadata")
_METADATA_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # no dots: a dot is a path in the store's payload keys

MetadataValue = str | int | bool


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


def check_retrieval_args(
    user_id: Any, query: Any, assistant_id: Any = None, top_k: Any = 10, *, max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
) -> None:
    """The same rules on both sides of the RPC; top_k may be None (the default applies)."""
    check_id("user_id", user_id)
    check_id("assistant_id", assistant_id, required=False)
    check_text("query", query, max_text_chars)
    if top_k is not None:
        check_top_k("top_k", top_k)


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

"""The turn a chat backend publishes and the page it becomes once sequenced.

Validation happens here, once, so every entry point (publish, the Memoryos class, the CLI, MCP)
rejects the same inputs with an error that names the field. Limits that are settings (text length,
metadata size, the zone for naive timestamps) come in through the validation context, so a
`Turn` never reads the environment itself.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

SCHEMA_VERSION = 1
ID_RULE = "letters, digits and _.:@+-, starting with a letter or digit, at most 128"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}$"
_ID = re.compile(ID_PATTERN)
DEFAULT_MAX_TEXT_CHARS = 32_000
DEFAULT_MAX_METADATA_BYTES = 8_192


def id_problem(value: object) -> str | None:
    """The one id rule (user, assistant and turn ids, wherever they enter): what is wrong with `value`,
    or None. Ids become Redis key parts and file names, so nothing outside this alphabet gets in."""
    if value is None:
        return "is required"
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if not _ID.fullmatch(value):  # not match(): "$" would let a trailing newline in
        return f"{value[:64]!r} is not a valid id ({ID_RULE})"
    return None


def check_id(name: str, value: object, *, required: bool = True) -> str | None:
    """`value` if it is a valid id (None when not required and absent); else ValueError naming the field."""
    if value is None and not required:
        return None
    problem = id_problem(value)
    if problem is not None:
        raise ValueError(f"{name}: {problem}")
    return value  # type: ignore[return-value]  # id_problem accepted it: a str


def check_text(name: str, value: object, max_chars: int = DEFAULT_MAX_TEXT_CHARS, *, required: bool = True) -> str:
    """A text argument (a query, a message) outside a `Turn`: a string of storable Unicode within the
    limit, and not blank when required; ValueError naming the field."""
    if not isinstance(value, str):
        raise ValueError(f"{name}: must be a string, not {type(value).__name__}")
    if required and not value.strip():
        raise ValueError(f"{name}: must not be empty or blank")
    try:
        return _check_text(value, max_chars)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _limit(info: ValidationInfo, name: str, default: Any) -> Any:
    context = info.context or {}
    return context.get(name, default)


def _check_text(value: str, max_chars: float) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("is not valid Unicode text (lone surrogate characters)") from exc
    if len(value) > max_chars:
        raise ValueError(
            f"is {len(value)} characters long, over the limit of {max_chars} "
            "(MEMORYOS_MAX_TEXT_CHARS); split it or raise the limit"
        )
    return value


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def parse_timestamp(value: Any, zone: ZoneInfo | timezone) -> datetime:
    """Accept datetimes and ISO 8601 strings; a value without a zone is read in `zone`."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"{value[:64]!r} is not an ISO 8601 date-time (e.g. 2025-05-01T14:30:00+02:00)") from exc
    else:
        raise ValueError(f"must be a datetime or an ISO 8601 string, not {type(value).__name__}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed


class Turn(BaseModel):
    """One exchange: what the user said and what the assistant answered."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, frozen=True)

    user_id: str = Field(json_schema_extra={"pattern": ID_PATTERN})
    user_input: str
    agent_response: str
    assistant_id: str | None = Field(default=None, json_schema_extra={"pattern": ID_PATTERN})
    timestamp: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    turn_id: str = Field(default_factory=lambda: uuid.uuid4().hex, json_schema_extra={"pattern": ID_PATTERN})
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("user_id", "assistant_id", "turn_id", mode="before")
    @classmethod
    def _id(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name == "assistant_id":
            return None
        problem = id_problem(value)  # pydantic names the field itself
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("user_input", "agent_response", mode="before")
    @classmethod
    def _text(cls, value: Any, info: ValidationInfo) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ValueError(f"must be a string, not {type(value).__name__}")
        return _check_text(value, _limit(info, "max_text_chars", DEFAULT_MAX_TEXT_CHARS))

    @field_validator("timestamp", mode="before")
    @classmethod
    def _timestamp(cls, value: Any, info: ValidationInfo) -> datetime:
        if value is None:
            return datetime.now(timezone.utc)
        return parse_timestamp(value, _limit(info, "timezone", timezone.utc))

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, value: Any, info: ValidationInfo) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError(f"must be a JSON object (dict), not {type(value).__name__}")
        try:
            encoded = json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"is not JSON-serialisable: {exc}") from exc
        max_bytes = _limit(info, "max_metadata_bytes", DEFAULT_MAX_METADATA_BYTES)
        size = len(encoded.encode("utf-8", errors="surrogatepass"))
        if size > max_bytes:
            raise ValueError(f"is {size} bytes serialised, over the limit of {max_bytes} (MEMORYOS_MAX_METADATA_BYTES)")
        for text in _strings(value):
            _check_text(text, math.inf)  # no NUL or lone surrogate hiding in keys or values
        return value

    @model_validator(mode="after")
    def _not_both_blank(self) -> Turn:
        if not self.user_input.strip() and not self.agent_response.strip():
            raise ValueError("user_input and agent_response are both blank; a turn needs some text")
        return self


class Page(BaseModel):
    """A turn as stored: sequenced by the publish script, the unit of short-term and mid-term memory."""

    model_config = ConfigDict(extra="ignore")

    seq: int
    user_id: str
    turn_id: str
    user_input: str
    agent_response: str
    timestamp: datetime
    assistant_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    published_at: float = 0.0
    schema_version: int = SCHEMA_VERSION

    def text(self) -> str:
        """What gets embedded: both sides of the exchange, as the paper's pages do."""
        return f"User: {self.user_input}\nAssistant: {self.agent_response}"

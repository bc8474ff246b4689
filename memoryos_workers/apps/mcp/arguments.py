"""The tools' argument checks: schemas' public checks (the same rules as publish and retrieval), raised
as ToolError naming the field, so the client sees isError with a reason and the server keeps serving.
Only what is particular to MCP lives here: JSON objects sent as text, and true/false flags."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from memoryos_workers.apps.mcp.sdk import ToolError

T = TypeVar("T")
log = logging.getLogger("memoryos.mcp")


def _as_tool_error(check: Callable[[], T]) -> T:
    try:
        return check()
    except ValueError as exc:  # schemas' checks name the field in their message
        raise ToolError(str(exc)) from None


def text(field: str, value: Any, *, required: bool = True) -> str:
    from schemas.settings import get_settings
    from schemas.turns import check_text

    limit = get_settings().max_text_chars
    return _as_tool_error(lambda: check_text(field, value, limit, required=required))


def user_id(value: Any) -> str | None:
    """None (or "") means the server's configured user."""
    from schemas.turns import check_id

    if value is None or value == "":
        return None
    return _as_tool_error(lambda: check_id("user_id", value))


def timestamp(value: Any) -> str | None:
    """ISO 8601, a naive one read in MEMORYOS_TIMEZONE; None (now) when omitted or blank."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    from schemas.settings import get_settings
    from schemas.turns import parse_timestamp

    try:
        return parse_timestamp(value, get_settings().tz).isoformat()
    except ValueError as exc:
        raise ToolError(f"timestamp: {exc}") from None


def meta_data(value: Any) -> dict[str, Any] | None:
    """A JSON object; a JSON string of one is accepted too (some clients send objects as text). Its size
    and content are checked with the turn (Turn.metadata)."""
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ToolError(f"meta_data: is not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(value, dict):
        raise ToolError(f"meta_data: must be a JSON object, not {type(value).__name__}")
    return value


def max_results(value: Any) -> int:
    from schemas.query import check_top_k

    return _as_tool_error(lambda: check_top_k("max_results", value))


def tenant_filters(principal: Any, value: Any) -> Any:
    """Retrieval filters with their assistant id in the tenant's namespace (apps/http/auth.Principal)."""
    return _as_tool_error(lambda: principal.filters(value))


def flag(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ToolError(f"{field}: must be true or false")
    return value


def rejected(exc: Exception) -> ToolError:
    """pydantic's ValidationError (from Turn) or a ValueError, as one message naming the fields."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        names = {"metadata": "meta_data"}
        parts = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err.get("loc", ())) or "turn"
            field = names.get(field, field)
            message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            parts.append(f"{field}: {message}")
        return ToolError("; ".join(parts))
    return ToolError(str(exc))


async def in_thread(fn: Callable[[], T]) -> T:
    """Blocking work (Redis, the model, the store) off the event loop; anticipated failures as ToolError."""
    import anyio.to_thread
    from pydantic import ValidationError
    from redis.exceptions import RedisError

    from memoryos_workers.vectorstore import StoreLockedError

    try:
        return await anyio.to_thread.run_sync(fn)
    except ToolError:
        raise
    except (ValidationError, ValueError) as exc:
        raise rejected(exc) from exc
    except StoreLockedError as exc:
        raise ToolError(str(exc)) from exc
    except RedisError as exc:
        log.warning("Redis error: %s: %s", type(exc).__name__, exc)
        raise ToolError(f"memory backend unavailable (Redis: {type(exc).__name__}); try again") from exc

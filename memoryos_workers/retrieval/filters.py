"""A retrieval's filters (schemas.query.RetrievalFilters) where the turns are: as the vector store's
payload filter for pages (so the store never returns a page the caller excluded), and as a test on the
turns Redis still holds (short-term, buffered and pending), so both agree on what matches."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Any

from schemas.query import RetrievalFilters
from schemas.turns import Page


def localise(moment: datetime, zone: tzinfo) -> datetime:
    """A time without a zone is the user's local time; one with a zone is shown in the user's zone."""
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment.astimezone(zone)


def check_range(filters: RetrievalFilters | None, zone: tzinfo) -> None:
    """since after until once both are in the user's zone (the client could not compare a naive and an
    aware one)."""
    if filters is None or filters.since is None or filters.until is None:
        return
    since, until = localise(filters.since, zone), localise(filters.until, zone)
    if since > until:
        raise ValueError(f"filters.until: {until.isoformat()} is before filters.since ({since.isoformat()})")


def payload_filter(filters: RetrievalFilters | None, zone: tzinfo) -> dict[str, Any]:
    """The conditions on a page's payload: `ts` (epoch seconds) within since..until, `assistant_id`, and
    `metadata.<key>` for each exact value."""
    if filters is None:
        return {}
    where: dict[str, Any] = {}
    bounds: dict[str, float] = {}
    if filters.since is not None:
        bounds["gte"] = localise(filters.since, zone).timestamp()
    if filters.until is not None:
        bounds["lte"] = localise(filters.until, zone).timestamp()
    if bounds:
        where["ts"] = bounds
    if filters.assistant_id is not None:
        where["assistant_id"] = filters.assistant_id
    for key, value in filters.metadata.items():
        where[f"metadata.{key}"] = value
    return where


def within(where: Mapping[str, Any], ts_range: Mapping[str, float]) -> dict[str, Any]:
    """`where` narrowed to a time range too (both on `ts`: the later start, the earlier end)."""
    merged = dict(where)
    bounds = dict(merged.get("ts") or {})
    for key, value in ts_range.items():
        if key in ("gte", "gt"):
            bounds[key] = max(value, bounds.get(key, value))
        else:
            bounds[key] = min(value, bounds.get(key, value))
    merged["ts"] = bounds
    return merged


def matches(page: Page, filters: RetrievalFilters | None, zone: tzinfo) -> bool:
    """The same test as `payload_filter`, on a turn Redis holds. Values match by type as the store's
    payload match does (True is not 1)."""
    if filters is None:
        return True
    ts = page.timestamp.timestamp()
    if filters.since is not None and ts < localise(filters.since, zone).timestamp():
        return False
    if filters.until is not None and ts > localise(filters.until, zone).timestamp():
        return False
    if filters.assistant_id is not None and page.assistant_id != filters.assistant_id:
        return False
    for key, value in filters.metadata.items():
        held = page.metadata.get(key, _MISSING)
        if type(held) is not type(value) or held != value:
            return False
    return True


_MISSING = object()

"""Which facts a retrieval reads by time: current ones, or (history) those that held in a window."""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from typing import Any

from memoryos_workers.retrieval.filters import localise

_ASKS_PAST = re.compile(r"\b(before|previous(ly)?|used to|formerly|former|earlier|in the past|back then|ago)\b",
                        re.IGNORECASE)


def asks_about_past(query: str) -> bool:
    """"Where did I live before Berlin?": replaced facts, shown with their windows, can answer it."""
    return bool(_ASKS_PAST.search(query))


def fact_window(flt: Any, zone: tzinfo | None) -> tuple[float | None, float | None]:
    """filters.since/until as Unix times, read as the page filter reads them (filters.localise: a time
    without a zone is in the user's)."""
    def at(value: datetime | None) -> float | None:
        return None if value is None else localise(value, zone or UTC).timestamp()
    return (at(flt.since), at(flt.until)) if flt is not None else (None, None)

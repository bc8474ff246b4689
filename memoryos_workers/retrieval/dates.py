"""Dates a question names ("in May 2023", "on 8 May", "2023-05-08"), as windows of time to search in."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS.update({"sept": 9})
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name and name.lower() != "may"})
_MONTH = r"(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_YEAR = r"(?P<year>(?:19|20)\d\d)"
_DAY = r"(?P<day>[0-3]?\d)(?:st|nd|rd|th)?"
_DATE_PATTERNS = [
    re.compile(r"\b(?P<year>(?:19|20)\d\d)-(?P<month>[01]?\d)-(?P<day>[0-3]?\d)\b"),
    re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR}\b", re.IGNORECASE),
    re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+{_YEAR}\b", re.IGNORECASE),
    re.compile(rf"\b{_MONTH},?\s+(?:of\s+)?{_YEAR}\b", re.IGNORECASE),
    re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}\b", re.IGNORECASE),
    re.compile(rf"\b{_MONTH}\s+{_DAY}\b(?!\s*(?:,?\s*(?:19|20)\d\d|:))", re.IGNORECASE),
    re.compile(rf"\b(?:in|during|of|since|until|last|this|early|late|mid)\s+{_MONTH}\b", re.IGNORECASE),
    re.compile(rf"\b{_YEAR}\b"),
]


@dataclass(frozen=True)
class DateMention:
    year: int | None
    month: int | None
    day: int | None

    def window(self, tz: Any) -> tuple[float, float] | None:
        """[start, end) in epoch seconds when the mention pins a span; None for a month of any year."""
        if self.year is None:
            return None
        if self.month is None:
            start, end = datetime(self.year, 1, 1, tzinfo=tz), datetime(self.year + 1, 1, 1, tzinfo=tz)
        elif self.day is None:
            start = datetime(self.year, self.month, 1, tzinfo=tz)
            end = datetime(self.year + (self.month == 12), self.month % 12 + 1, 1, tzinfo=tz)
        else:
            start = datetime(self.year, self.month, self.day, tzinfo=tz)
            end = start + timedelta(days=1)
        return start.timestamp(), end.timestamp()

    def matches(self, ts: datetime) -> bool:
        return (
            (self.year is None or ts.year == self.year)
            and (self.month is None or ts.month == self.month)
            and (self.day is None or ts.day == self.day)
        )


def date_mentions(query: str, limit: int = 3) -> list[DateMention]:
    """Years, months and days the query names, most specific first; "May" only next to a number or after
    "in" (it is also a verb)."""
    found: list[DateMention] = []
    taken: list[tuple[int, int]] = []
    for pattern in _DATE_PATTERNS:
        for m in pattern.finditer(query):
            if any(m.start() < end and start < m.end() for start, end in taken):
                continue
            mention = _mention(m.groupdict())
            if mention is not None:
                taken.append((m.start(), m.end()))
                if mention not in found:
                    found.append(mention)
    return found[:limit]


def _mention(groups: dict[str, str | None]) -> DateMention | None:
    year = int(groups["year"]) if groups.get("year") else None
    month_text = groups.get("month")
    month = None
    if month_text:
        month = int(month_text) if month_text.isdigit() else _MONTHS.get(month_text.lower().rstrip("."))
        if month is None or not 1 <= month <= 12:
            return None
    day = int(groups["day"]) if groups.get("day") else None
    if day is not None and (month is None or not 1 <= day <= calendar.monthrange(year or 2000, month)[1]):
        return None
    if day is not None and year is None:
        return DateMention(None, month, day)
    return DateMention(year, month, day)

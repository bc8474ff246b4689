"""Time as people say it in a question ("yesterday", "last Tuesday", "two weeks ago", "this morning",
"in March", "last year", "on 8 May", "in May 2023"), as windows of time to search in.

Everything is resolved against the time the question is asked at (`now`, in the user's time zone), never
the server's clock; the calendar arithmetic is dateparser's (with PREFER_DATES_FROM past, so "in March"
is the most recent March and "on 8 May" the most recent 8 May). What this module adds is where a time
phrase is and whether it is one: a phrase is a run of date words, and it counts only with an anchor (a
full weekday name, a month next to a number or after "in", "since", "last"..., a year after "in"...,
"yesterday", "ago", "last week"...). So "This may sound odd" is not May, "2000 meters" not a year, and
"we" not Wednesday (dateparser's own search reads all three as dates).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from typing import Any

_TOKEN = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|[A-Za-z]+|\d+(?:st|nd|rd|th)?|,")
_MONTHS = {m.lower() for m in calendar.month_name if m}
_MONTH_ABBR = {m.lower() for m in calendar.month_abbr if m} | {"sept"}
_WEEKDAYS = {d.lower() for d in calendar.day_name}
_UNITS = {"day", "days", "week", "weeks", "month", "months", "year", "years"}
_NUMBER_WORDS = {"a", "an", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                 "eleven", "twelve", "few", "couple"}
_MODIFIERS = {"last", "this", "past", "previous"}
_PARTS = {"morning": (5, 12), "afternoon": (12, 18), "evening": (18, 23), "night": (18, 30), "tonight": (18, 30)}
_RELATIVE = {"yesterday", "today", "tonight", "ago", "weekend"}
_PREPOSITIONS = {"in", "during", "since", "until", "till", "of", "on", "by", "from", "before", "after", "early",
                 "late", "mid", "earlier"}
_GLUE = _PREPOSITIONS | {"the", ","}
_YEAR_PREPOSITIONS = {"in", "since", "during", "until", "till", "of", "by", "before", "after", "from"}
_MONTH_PREPOSITIONS = {"in", "during", "since", "until", "till", "of", "early", "late", "mid", "by", "from"}
# After a bare year, words that start a new clause ("in 2022 I moved"); any other word makes the number a
# quantity ("2000 meters").
_CLAUSE_WORDS = {"and", "or", "but", "when", "while", "i", "we", "you", "he", "she", "they", "it", "did", "was",
                 "were", "what", "with", "for", "to", "at", "as", "so", "because", "after", "before", "that"}
_WORDS = _MONTHS | _MONTH_ABBR | _WEEKDAYS | _UNITS | _NUMBER_WORDS | _MODIFIERS | set(_PARTS) | _RELATIVE | _GLUE
# Every anchor (see _anchored) holds a digit or one of these words; a query with neither names no time, and
# most do not, so that is tested before any tokenising or parsing. Words are runs of ASCII letters, as
# _TOKEN cuts them.
_ANCHOR_WORDS = frozenset(_MONTHS | _MONTH_ABBR | _WEEKDAYS | _UNITS | set(_PARTS) | _RELATIVE)
_LETTERS = re.compile(r"[A-Za-z]+")
_DIGIT = re.compile(r"\d")


@dataclass(frozen=True)
class TimeWindow:
    """[start, end) in the user's zone, and the words of the question it came from."""

    start: datetime
    end: datetime
    text: str

    def payload_range(self) -> dict[str, float]:
        """The window as a range filter on the pages' `ts` payload (epoch seconds)."""
        return {"gte": self.start.timestamp(), "lt": self.end.timestamp()}

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def time_windows(query: str, now: datetime, limit: int = 3) -> list[TimeWindow]:
    """The windows of time the query names, in the order it names them. `now` must carry its zone."""
    if now.tzinfo is None:
        raise ValueError("now: must carry a time zone here (the retriever localises it first)")
    return _windows(query, now, limit) if may_name_time(query) else []


def _windows(query: str, now: datetime, limit: int) -> list[TimeWindow]:
    """time_windows without the cheap test first (the tests compare both)."""
    tokens = [(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(query)]
    found: list[TimeWindow] = []
    for span in _spans(tokens):
        window = _window(span, tokens, query, now) or _first_piece(span, tokens, query, now)
        if window is not None and window not in found:
            found.append(window)
        if len(found) == limit:
            break
    return found


def may_name_time(query: str) -> bool:
    """False when the query certainly names no time (no digit, no month, weekday, unit or word like
    "yesterday"): the cheap test every query passes before the date parsing."""
    if _DIGIT.search(query) is not None:
        return True
    return not _ANCHOR_WORDS.isdisjoint(map(str.lower, _LETTERS.findall(query)))


def warm_up() -> None:
    """dateparser reads its language data on first use (about 0.2 s): not on a user's first question."""
    time_windows("yesterday", datetime.now().astimezone())


def _spans(tokens: Sequence[tuple[str, int, int]]) -> list[tuple[int, int]]:
    """Runs of date words: [first, last) token indexes."""
    spans, start = [], None
    for i, (text, _, _) in enumerate([*tokens, ("", 0, 0)]):
        if text and _is_date_word(text):
            start = i if start is None else start
            continue
        if start is not None:
            end = i
            while end > start and tokens[end - 1][0].lower() in _GLUE:  # "in 2022," ends at the year
                end -= 1
            if end > start:
                spans.append((start, end))
            start = None
    return spans


def _first_piece(span: tuple[int, int], tokens: Sequence[tuple[str, int, int]], query: str,
                 now: datetime) -> TimeWindow | None:
    """A run dateparser cannot read as a whole ("the week before 9 June 2023", "the one from last week"):
    its pieces between prepositions, the first that is a time."""
    first, last = span
    cuts = [i for i in range(first + 1, last) if tokens[i][0].lower() in _PREPOSITIONS - {"of"}]
    for start, end in zip([first, *cuts], [*cuts, last], strict=True):
        if (start, end) != span and (window := _window((start, end), tokens, query, now)) is not None:
            return window
    return None


def _is_date_word(text: str) -> bool:
    lower = text.lower()
    return lower in _WORDS or lower[:1].isdigit()


def _window(span: tuple[int, int], tokens: Sequence[tuple[str, int, int]], query: str,
            now: datetime) -> TimeWindow | None:
    first, last = span
    words = [t[0] for t in tokens[first:last]]
    lower = [w.lower() for w in words]
    after = tokens[last][0] if last < len(tokens) else ""
    if not _anchored(words, lower, after):
        return None
    text = query[tokens[first][1]:tokens[last - 1][2]]
    part = next((_PARTS[w] for w in lower if w in _PARTS), None)
    if "weekend" in lower:
        start, end = _weekend(lower, now)
    else:
        resolved = _resolve(_core(words, lower), now)
        if resolved is None:
            return None
        start, end = resolved
        if "last" in lower and any(_before_month(lower, i) for i in range(len(lower))) and end > now:
            start, end = start.replace(year=start.year - 1), end.replace(year=end.year - 1)  # "last May" in May
    if part is not None:
        start = start.replace(hour=0, minute=0) + timedelta(hours=part[0])
        end = start - timedelta(hours=part[0]) + timedelta(hours=part[1])
    return TimeWindow(start, end, text)


def _anchored(words: list[str], lower: list[str], after: str) -> bool:
    """Whether the run is a time at all (see the module's docstring)."""
    if any(w in ("yesterday", "today", "tonight") for w in lower) or any("-" in w for w in lower):
        return True
    if "ago" in lower and any(w in _UNITS for w in lower):
        return True
    if any(w in _WEEKDAYS for w in lower):
        return True
    for i, w in enumerate(lower):
        before = lower[i - 1] if i else ""
        if w in _MODIFIERS and i + 1 < len(lower) and (lower[i + 1] in _UNITS | set(_PARTS) | {"weekend"}):
            return True
        if w in _MONTHS or w in _MONTH_ABBR:
            if _month_anchored(words, lower, i):
                return True
        if _is_year(w) and before in _YEAR_PREPOSITIONS and i == len(lower) - 1:
            return not after or not after[0].islower() or after.lower() in _CLAUSE_WORDS
    return False


def _month_anchored(words: list[str], lower: list[str], i: int) -> bool:
    """A month next to a number ("8 May", "May 2023", "4th of July"), or after "in", "since"...; after
    "last" or "this" only when written as a name ("this May", not "this may sound odd")."""
    neighbours = [lower[j] for j in (i - 2, i - 1, i + 1) if 0 <= j < len(lower)]
    if any(n[:1].isdigit() for n in neighbours):
        return True
    if lower[i] in _MONTH_ABBR and lower[i] not in _MONTHS:
        return False  # "mar", "jan": only next to a number
    before = lower[i - 1] if i else ""
    if before in _MONTH_PREPOSITIONS:
        return True
    return before in _MODIFIERS and (lower[i] != "may" or words[i] == "May")


def _is_year(word: str) -> bool:
    return len(word) == 4 and word.isdigit() and 1900 <= int(word) <= 2100


def _core(words: list[str], lower: list[str]) -> str:
    """What dateparser reads: the run without leading and trailing glue and without the part of the day
    ("this morning" is today's morning; "last night" yesterday's)."""
    kept = [w for i, (w, low) in enumerate(zip(words, lower, strict=True))
            if (low not in _PARTS or low == "tonight") and not _before_month(lower, i)]
    if lower[-1:] == ["night"] and lower[-2:-1] == ["last"]:
        return "yesterday"
    while kept and kept[0].lower() in _GLUE:
        kept.pop(0)
    while kept and kept[-1].lower() in _GLUE:
        kept.pop()
    core = " ".join(kept).replace(" ,", ",")
    if core.lower() in ("this", "tonight", ""):
        return "today"
    return core


def _before_month(lower: list[str], i: int) -> bool:
    """"this May", "last March": dateparser reads the month alone, the most recent one."""
    return lower[i] in _MODIFIERS and i + 1 < len(lower) and lower[i + 1] in _MONTHS


def _resolve(core: str, now: datetime) -> tuple[datetime, datetime] | None:
    from dateparser.date import DateDataParser

    zone = now.tzinfo
    assert zone is not None
    local = now.replace(tzinfo=None)
    parser = DateDataParser(languages=["en"], settings={"RELATIVE_BASE": local, "PREFER_DATES_FROM": "past",
                                                        "RETURN_AS_TIMEZONE_AWARE": False})
    try:
        data = parser.get_date_data(core)
    except Exception:  # noqa: BLE001 - a phrase dateparser cannot read is simply not a date
        return None
    if data.date_obj is None:
        return None
    return _period(data.date_obj, data.period or "day", zone)


def _period(moment: datetime, period: str, zone: tzinfo) -> tuple[datetime, datetime]:
    day = datetime.combine(moment.date(), time.min, tzinfo=zone)
    if period == "year":
        start = day.replace(month=1, day=1)
        return start, start.replace(year=start.year + 1)
    if period == "month":
        start = day.replace(day=1)
        return start, (start + timedelta(days=32)).replace(day=1)
    if period == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    return day, day + timedelta(days=1)


def _weekend(lower: list[str], now: datetime) -> tuple[datetime, datetime]:
    """"this weekend": the one of this week; "last weekend": the one before the current week's (the one
    just past on a weekday)."""
    today = datetime.combine(now.date(), time.min, tzinfo=now.tzinfo)
    saturday = today - timedelta(days=today.weekday()) + timedelta(days=5)
    if "last" in lower or "past" in lower or "previous" in lower or saturday > today:
        saturday -= timedelta(days=7)
    return saturday, saturday + timedelta(days=2)


def describe(windows: Sequence[TimeWindow]) -> list[dict[str, Any]]:
    """For logs and tests: each window as ISO strings."""
    return [{"text": w.text, "start": w.start.isoformat(), "end": w.end.isoformat()} for w in windows]

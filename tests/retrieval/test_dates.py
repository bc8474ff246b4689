"""Time as people say it, resolved against the time of the question in the user's zone (dateparser does
the calendar arithmetic); look-alikes that are not times stay out."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from memoryos_workers.retrieval.dates import _WORDS, _windows, may_name_time, time_windows

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2025, 5, 14, 15, 0, tzinfo=PARIS)  # a Wednesday afternoon


def _day(y: int, m: int, d: int, h: int = 0) -> datetime:
    return datetime(y, m, d, h, tzinfo=PARIS)


TIMES = [
    ("What did I say yesterday?", _day(2025, 5, 13), _day(2025, 5, 14)),
    ("What did we talk about last Tuesday?", _day(2025, 5, 13), _day(2025, 5, 14)),
    ("What did I tell you on Friday?", _day(2025, 5, 9), _day(2025, 5, 10)),
    ("two weeks ago I went hiking, remember?", _day(2025, 4, 28), _day(2025, 5, 5)),  # that week
    ("What did I eat this morning?", _day(2025, 5, 14, 5), _day(2025, 5, 14, 12)),
    ("what did I do last night", _day(2025, 5, 13, 18), _day(2025, 5, 14, 6)),
    ("What happened in March?", _day(2025, 3, 1), _day(2025, 4, 1)),  # the most recent March
    ("When did I go camping in June?", _day(2024, 6, 1), _day(2024, 7, 1)),  # June 2025 is to come
    ("What did I do last year?", _day(2024, 1, 1), _day(2025, 1, 1)),
    ("What did I say on 8 May?", _day(2025, 5, 8), _day(2025, 5, 9)),
    ("What did I say 3 days ago?", _day(2025, 5, 11), _day(2025, 5, 12)),
    ("What did I say last week?", _day(2025, 5, 5), _day(2025, 5, 12)),
    ("what happened last month", _day(2025, 4, 1), _day(2025, 5, 1)),
    ("What did I do last weekend?", _day(2025, 5, 10), _day(2025, 5, 12)),
    ("What did I plant last May?", _day(2024, 5, 1), _day(2024, 6, 1)),
    ("What did I do on October 13, 2023?", _day(2023, 10, 13), _day(2023, 10, 14)),
    ("What happened on 1 February, 2023?", _day(2023, 2, 1), _day(2023, 2, 2)),
    ("Plans for 2024-03-05?", _day(2024, 3, 5), _day(2024, 3, 6)),
    ("What did we paint in July 2023?", _day(2023, 7, 1), _day(2023, 8, 1)),
    ("How many beach trips in 2023?", _day(2023, 1, 1), _day(2024, 1, 1)),
    ("I ran 2000 meters in 2022, what was my time?", _day(2022, 1, 1), _day(2023, 1, 1)),
    ("What did I do on the 4th of July?", _day(2024, 7, 4), _day(2024, 7, 5)),
]
LOOK_ALIKES = [
    "This may sound odd, but what is my dog called?",
    "May I ask what you think?",
    "I may go hiking",
    "I ran 2000 meters",
    "March for peace: did I go?",
    "Did we talk about the sun?",  # "we" is not Wednesday, "sun" not Sunday
    "She is 32 and lives at number 8",
    "call me at 5",
    "When did Caroline go to the LGBTQ support group?",
    "did I mention the 1990s",
]
TWO_PHRASES = "What did I do yesterday evening and last weekend?"


@pytest.mark.parametrize(("query", "start", "end"), TIMES)
def test_time_as_people_say_it(query: str, start: datetime, end: datetime) -> None:
    windows = time_windows(query, NOW)
    assert [(w.start, w.end) for w in windows] == [(start, end)], [w.text for w in windows]


@pytest.mark.parametrize("query", LOOK_ALIKES)
def test_look_alikes_are_not_times(query: str) -> None:
    assert time_windows(query, NOW) == []


def test_two_phrases_and_the_query_time_decides() -> None:
    windows = time_windows(TWO_PHRASES, NOW)
    assert [(w.text, w.start, w.end) for w in windows] == [
        ("yesterday evening", _day(2025, 5, 13, 18), _day(2025, 5, 13, 23)),
        ("last weekend", _day(2025, 5, 10), _day(2025, 5, 12)),
    ]
    # The same words a week later mean other days: nothing is read from the server's clock.
    later = time_windows("What did I say yesterday?", NOW + timedelta(days=7))
    assert [(w.start, w.end) for w in later] == [(_day(2025, 5, 20), _day(2025, 5, 21))]


def test_the_users_zone_decides_the_day() -> None:
    """23:30 in Paris is already tomorrow in Tokyo: "yesterday" is a different day for each."""
    moment = datetime(2025, 5, 14, 21, 30, tzinfo=ZoneInfo("UTC"))
    paris = time_windows("yesterday", moment.astimezone(PARIS))[0]
    tokyo = time_windows("yesterday", moment.astimezone(ZoneInfo("Asia/Tokyo")))[0]
    assert paris.start == _day(2025, 5, 13) and tokyo.start == datetime(2025, 5, 14, tzinfo=ZoneInfo("Asia/Tokyo"))
    with pytest.raises(ValueError, match="now: must carry a time zone"):
        time_windows("yesterday", datetime(2025, 5, 14))


def _phrases() -> list[str]:
    """Every phrase of the tests above, each in a few spellings, and random runs of the module's date words
    around ordinary words: what the parser reads as a time here must pass the cheap test."""
    base = [q for q, _, _ in TIMES] + LOOK_ALIKES + [TWO_PHRASES, "yesterday", "3May", "in_2023", "TODAY!"]
    out = base + [q.upper() for q in base] + [q.lower() for q in base] + [f"x{q}x" for q in base]
    rng = random.Random(24)
    vocabulary = sorted(_WORDS) + ["2023", "8", "4th", "2024-03-05", "we", "sun", "garden", "Caroline", "did"]
    for _ in range(3000):
        words = [rng.choice(vocabulary) for _ in range(rng.randint(1, 5))]
        out.append(" ".join(w.capitalize() if rng.random() < 0.3 else w for w in words))
    return out


def test_the_cheap_test_never_misses_a_time_the_parser_reads() -> None:
    phrases = _phrases()
    read = [q for q in phrases if _windows(q, NOW, 3)]
    assert len(read) > 500  # the random runs do name times, so the comparison means something
    assert [q for q in read if not may_name_time(q)] == []
    # and what it lets through is exactly what the parser reads
    assert all(time_windows(q, NOW) == _windows(q, NOW, 3) for q in phrases)


def test_most_questions_skip_the_parser() -> None:
    for query in ("What did I tell you about the garden?", "Do you remember what happened with my sister Ana?",
                  "How did I feel about the pottery class?", "When did Caroline go to the LGBTQ support group?"):
        assert not may_name_time(query)
    assert may_name_time("last Tuesday") and may_name_time("in 2023") and may_name_time("two weeks ago")

"""Checks that a persona a model wrote is a persona (bench/real_llm_check.py): the summary describes the user
in the third person and is not a line of chat; each fact names whom it is about; topic themes are themes,
not copied chat fragments. Each returns the offending texts, so a failed check says what failed.

Seen with the 0.5B model before these checks: the profile summary "I'm feeling a bit overwhelmed with the
kids & work. What's up with you?", themes copied from turns, facts like "That's lovely, I'm happy for you"."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_FIRST_PERSON = re.compile(r"\b(I|I'm|I've|I'd|I'll|me|my|mine|myself|we|our|us)\b")
_PRONOUN_START = {"i", "he", "she", "they", "it", "we", "you", "my", "his", "her", "their", "our", "your",
                  "this", "that", "there", "that's", "it's", "i'm", "wow", "yes", "no", "oh"}
_WORD = re.compile(r"[a-z0-9']+")
COPY_WORDS = 6  # a run of this many words of a turn, said the same, is a copy


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _runs(words: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def copies_a_turn(text: str, turns: Iterable[str], n: int = COPY_WORDS) -> bool:
    """Whether `text` is a turn, or holds a run of `n` words of one (as long as the text is shorter than
    that, the whole text inside a turn counts)."""
    words = _words(text)
    if not words:
        return False
    size = min(n, len(words))
    mine = _runs(words, size)
    return any(mine & _runs(_words(turn), size) for turn in turns)


def summary_problems(summary: str, turns: Sequence[str]) -> list[str]:
    """Why a profile summary is not a third-person portrait (empty when it is)."""
    problems = []
    if not summary.strip():
        problems.append("empty")
    if _FIRST_PERSON.search(summary):
        problems.append(f"first person: {summary[:120]!r}")
    if copies_a_turn(summary, turns):
        problems.append(f"copies a turn: {summary[:120]!r}")
    return problems


def fact_without_subject(fact: str) -> bool:
    """A fact names its subject: no first person, and it does not open with a pronoun or an exclamation
    (who "she" is cannot be told once the fact stands alone)."""
    first = (_words(fact) or [""])[0]
    return bool(_FIRST_PERSON.search(fact)) or first in _PRONOUN_START


def theme_copies(themes: Iterable[str], turns: Sequence[str]) -> list[str]:
    """The themes that are chat fragments: a run of words of a turn, or longer than a theme (12 words)."""
    return [t for t in themes if t and (len(_words(t)) > 12 or (len(_words(t)) >= 4 and copies_a_turn(t, turns, 4)))]

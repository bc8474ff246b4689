"""Content words of a text: what keyword comparisons (segment Fscore, a query against a profile trait,
whether a summary says something the pages do not) look at, so every comparison agrees on what a word is."""

from __future__ import annotations

import re
from collections.abc import Iterator

WORD = re.compile(r"[^\W\d_][\w'-]{2,}", re.UNICODE)
STOPWORDS = frozenset(
    """the and for are but not you your yours with this that have has had was were will would can could
    should about what when where which who whom why how from into out over under again then there here
    they them their our ours she her hers him his its it's i'm i've you're don't didn't that's just also
    very really some any all each more most other such only own same than too been being does did doing
    because while after before above below between both few nor off once so yes yeah okay thanks thank
    maybe like get got one two lot much well good great nice sure know think want need going make
    user assistant""".split()
)


def words(text: str) -> Iterator[str]:
    """Lower-cased words of three letters or more, without stopwords, in order (repeats kept)."""
    for match in WORD.finditer(text):
        word = match.group(0).lower()
        if word not in STOPWORDS:
            yield word


STEM_CHARS = 5


def content_stems(text: str) -> set[str]:
    """Content words cut to their first five letters: a crude stem, enough for "paint", "paints" and
    "painting" to count as one word when a text is compared with a question or with other texts."""
    return {w[:STEM_CHARS] for w in words(text)}

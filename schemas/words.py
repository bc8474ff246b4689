"""Content words of a text: what keyword comparisons (segment Fscore, a query against a profile trait,
whether a summary says something the pages do not) look at, so every comparison agrees on what a word is.

Stems are asked for on every retrieval, for every page, summary, trait and fact the context may hold,
while the texts themselves rarely change: so they are computed once per text. A page's stems are
computed when it is written and kept in its payload (`stored_stems`; retrieval hands them to the fitting
with the page, producers/context/parts.py `PageCandidate`, or puts them in the cache with `remember_stems`);
anything else goes through a bounded cache keyed by the text.
"""

from __future__ import annotations

import re
import sys
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

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
#: Changes whenever what `compute_stems` returns for a text changes (STEM_CHARS, STOPWORDS, WORD), so
#: stems stored under an older version are recomputed instead of trusted.
STEMS_VERSION = 1
#: Texts whose stems are kept: about 0.3 KB each (a short text, a few interned stems), so at most a few MB.
STEM_CACHE_SIZE = 16_384


def compute_stems(text: str) -> frozenset[str]:
    """Content words cut to their first five letters: a crude stem, enough for "paint", "paints" and
    "painting" to count as one word when a text is compared with a question or with other texts."""
    return frozenset(sys.intern(w[:STEM_CHARS]) for w in words(text))


class _StemCache:
    """Least recently used stems by text; thread-safe (every retrieval thread of a process shares it). A
    stored page's stems are kept as the payload's string and split when first asked for: a retrieval
    remembers the stems of every candidate page, and the fitting asks for those of the few it keeps."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, frozenset[str] | str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> frozenset[str] | None:
        with self._lock:
            stems = self._items.get(text)
            if stems is None:
                return None
            self._items.move_to_end(text)
            if isinstance(stems, str):
                stems = self._items[text] = frozenset(stems.split())
            return stems

    def put(self, text: str, stems: frozenset[str] | str) -> None:
        """`stems`: the set, or a stored page's stems joined by spaces (`stored_stems`)."""
        with self._lock:
            self._items[text] = stems
            self._items.move_to_end(text)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


_CACHE = _StemCache(STEM_CACHE_SIZE)


def content_stems(text: str) -> set[str]:
    """`compute_stems(text)`, computed once per text while it stays in the cache (a new set each call, so
    callers may change it)."""
    stems = _CACHE.get(text)
    if stems is None:
        stems = compute_stems(text)
        _CACHE.put(text, stems)
    return set(stems)


def page_text(user_input: str, agent_response: str) -> str:
    """The text of a page whose words are compared (both sides of the exchange): one spelling for the
    writer that stores its stems and the reader that looks them up."""
    return f"{user_input} {agent_response}"


def trait_text(dimension: str, evidence: str) -> str:
    """The text of a profile trait whose words are compared (with the query, with the chosen pages)."""
    return f"{dimension} {evidence}"


def stored_stems(user_input: str, agent_response: str) -> dict[str, Any]:
    """What a page's payload keeps of its words, computed once when it is written: one string of stems
    joined by spaces (a stem holds no space), as every search converts the payloads it reads, string by string."""
    stems = " ".join(sorted(compute_stems(page_text(user_input, agent_response))))
    return {"stems": stems, "stems_version": STEMS_VERSION}


def remember_stems(payload: Mapping[str, Any]) -> None:
    """Puts a stored page's stems in the cache, so `content_stems` of its text costs a lookup. A payload
    written before pages kept their stems (or under another STEMS_VERSION) is skipped: its stems are then
    computed when asked for."""
    stems = payload.get("stems")
    if payload.get("stems_version") != STEMS_VERSION or not isinstance(stems, str):
        return
    text = page_text(str(payload.get("user_input", "")), str(payload.get("agent_response", "")))
    _CACHE.put(text, stems)


def text_stems(text: str) -> str:
    """What a stored record keeps of a derived text's words (a fact, a profile's summary or trait, a topic or
    chain summary), computed once when it is written: one string, "version:checksum of the text:stems
    joined by spaces". One string field, because a payload is converted to Python field by field on every
    read (a record with the text again cost a fact search about 9 microseconds per fact); the checksum
    (CRC-32) ties the stems to their text, so a text changed by a writer that did not store its stems, or
    stems of an older STEMS_VERSION, are never taken for its own (`stems_for`)."""
    return f"{STEMS_VERSION}:{_checksum(text)}:{' '.join(sorted(compute_stems(text)))}"


def stems_for(stored: Any, text: str) -> str | None:
    """The stems `text_stems` stored for exactly this text (joined by spaces), or None: not stored, stored for
    another text, or under another version (the caller then computes them)."""
    if not isinstance(stored, str):
        return None
    version, _, rest = stored.partition(":")
    checksum, sep, stems = rest.partition(":")
    if sep and version == _VERSION and checksum == _checksum(text):
        return stems
    return None


def remember_text_stems(stored: Any, text: str) -> None:
    """Puts the stems `text_stems` stored for this text in the cache (nothing when they are not its own), so
    `content_stems(text)` costs a lookup."""
    stems = stems_for(stored, text)
    if stems is not None:
        _CACHE.put(text, stems)


_VERSION = str(STEMS_VERSION)


def _checksum(text: str) -> str:
    return format(zlib.crc32(text.encode()), "x")


def clear_stems_cache() -> None:
    """Forget every cached stem (tests; benchmarks that time a cold cache)."""
    _CACHE.clear()



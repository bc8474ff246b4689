"""A user fact's quote: the user's own words it rests on, copied by the model from one of the user's lines.

Why: the real 0.5B model (bench/real_llm_check.py, conv-26) wrote no user fact the post-check could keep. Its
facts were invented ("The user has been working in mental health for the past year", 8-16 times per answer)
or the assistant's lines credited to the user; the grounding check rightly dropped all of them. Copying is
what a small model does well, so the schema asks for the quote before the fact's text (a grammar-constrained
server writes properties in order: the model picks the user's words first, then restates them). When the text
fails the post-check but the quote stands word for word in a user line of the call's pages, the fact is that
line's sentence(s) said in the third person: the claim is the user's own, whoever worded it. A quote that is
in no user line (invented, or the assistant's words) rescues nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from memoryos_workers.pipeline.fact_form import sentences
from memoryos_workers.pipeline.persona_quality import words

QUOTE_MIN_WORDS = 4  # fewer words ("I love it") are found in too many lines to say which claim is meant
# The schema's maxLength: a few words locate the line, whose whole sentence is then used; each character asked
# for costs answer tokens that would hold other facts (answer_schemas.PERSONA_FACT_TOKENS).
QUOTE_CHARS = 100
MAX_QUOTED_SENTENCES = 2


def _find(needle: list[str], hay: list[str]) -> int:
    """Where the needle's words stand in order in `hay`; its last word may be cut short (a grammar stops the
    quote at QUOTE_CHARS mid-word: "... to support those with simi")."""
    n, *head, last = len(needle), *needle
    return next((i for i in range(len(hay) - n + 1)
                 if hay[i : i + n - 1] == head and hay[i + n - 1].startswith(last)), -1)


def quoted_sentences(quote: str, lines: Sequence[str]) -> str | None:
    """The sentences of the first user line that holds the quote's words in order (at most
    MAX_QUOTED_SENTENCES, from the one where the quote starts); None when no line holds them or the quote is
    too short to name a claim."""
    needle = words(quote)
    if len(needle) < QUOTE_MIN_WORDS:
        return None
    for line in lines:
        parts = sentences(" ".join(line.split()))
        flat: list[str] = []
        starts: list[int] = []
        for part in parts:
            starts.append(len(flat))
            flat += words(part)
        at = _find(needle, flat)
        if at < 0:
            continue
        first = max(i for i, s in enumerate(starts) if s <= at)
        end = at + len(needle)
        last = max(i for i, s in enumerate(starts) if s < end)
        return " ".join(parts[first : min(last + 1, first + MAX_QUOTED_SENTENCES)])
    return None

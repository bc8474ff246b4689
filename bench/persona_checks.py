"""Checks that a persona a model wrote is a persona (bench/real_llm_check.py): the summary describes the user
in the third person and is not a line of chat; each fact names whom it is about; the summary and facts say
what the turns say (half their content words or more and all but two at most, else invented); topic themes
are themes, not copied chat fragments. Each returns the offending texts, so a failed check says what failed.

The logic is the product's (memoryos_workers/pipeline/persona_quality.py), which the pipeline's post-check
applies to every persona answer; the benchmark reports the same checks on what was stored. Seen with the
0.5B model before these checks: the profile summary "I'm feeling a bit overwhelmed with the kids & work.
What's up with you?", themes copied from turns, facts like "That's lovely, I'm happy for you". And after
them (issue 21, pipeline/fact_form.py): facts that were reported lines ("The user said that he went ..."),
cut mid-sentence by the schema's length cap, and stored twice, once a few words shorter."""

from __future__ import annotations

from collections.abc import Sequence

from memoryos_workers.pipeline.fact_form import cut_mid_sentence, is_reported, near_copies, near_copy, sentences
from memoryos_workers.pipeline.persona_quality import (
    COPY_WORDS,
    claims_nothing,
    copies_a_turn,
    fact_without_subject,
    grounded,
    refusal,
    source_stems,
    summary_problems,
    theme_copies,
)
from memoryos_workers.pipeline.trait_form import EVIDENCE_CHARS, names_a_dimension

__all__ = ["COPY_WORDS", "copies_a_turn", "fact_form_problems", "fact_without_subject", "grounded", "source_stems",
           "summary_problems", "theme_copies", "trait_problems"]

REPORTED = "no fact is a reported line"
NEAR_COPIES = "no two facts are near copies"
CUT = "no fact is cut mid-sentence"
REFUSED = "no fact is a model declining its task"
EMPTY = "every fact claims something (\"The user said\" does not)"


def fact_form_problems(facts: Sequence[str]) -> dict[str, list[str]]:
    """The facts that are not in a fact's shape, by check (each check passes when its list is empty): a line
    reported ("The user said ..."), two facts that are one (the pair, joined by " | "), a fact whose last
    sentence was cut, a model's refusal ("The assistant can't assist with that.", stored at 080e2a8)."""
    return {
        REPORTED: [f for f in facts if is_reported(f)],
        NEAR_COPIES: [f"{a} | {b}" for a, b in near_copies(facts)],
        CUT: [f for f in facts if cut_mid_sentence(f)],
        REFUSED: [f for f in facts if refusal(f)],
        EMPTY: [f for f in facts if claims_nothing(f)],
    }


TRAITS_SAID = "every trait's evidence said in the user's lines"
TRAITS_APART = "no two traits share their evidence"
TRAITS_SHAPE = "every trait a short name with one sentence of evidence"


def trait_problems(traits: Sequence[tuple[str, str]], user_sources: frozenset[str]) -> dict[str, list[str]]:
    """The stored traits ((dimension, evidence) pairs) that are not traits, by check: evidence the user's lines
    do not say (the 0.5B model gave every trait the assistant's line), evidence two traits share (the pair's
    dimensions, joined by " | "), a name that names no dimension or evidence longer than one sentence."""
    shared = [f"{d} | {d2}" for i, (d, e) in enumerate(traits) for d2, e2 in traits[i + 1:] if near_copy(e, e2)]
    return {
        TRAITS_SAID: [f"{d}: {e}" for d, e in traits if not grounded(e, user_sources)],
        TRAITS_APART: shared,
        TRAITS_SHAPE: [f"{d}: {e}" for d, e in traits if not names_a_dimension(d) or len(e) > EVIDENCE_CHARS
                       or len(sentences(e)) > 1],
    }

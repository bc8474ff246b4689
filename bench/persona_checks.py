"""Checks that a persona a model wrote is a persona (bench/real_llm_check.py): the summary describes the user
in the third person and is not a line of chat; each fact names whom it is about; the summary and facts say
what the turns say (half their content words or more and all but two at most, else invented); topic themes
are themes, not copied chat fragments. Each returns the offending texts, so a failed check says what failed.

The logic is the product's (memoryos_workers/pipeline/persona_quality.py), which the pipeline's post-check
applies to every persona answer; the benchmark reports the same checks on what was stored. Seen with the
0.5B model before these checks: the profile summary "I'm feeling a bit overwhelmed with the kids & work.
What's up with you?", themes copied from turns, facts like "That's lovely, I'm happy for you"."""

from __future__ import annotations

from memoryos_workers.pipeline.persona_quality import (
    COPY_WORDS,
    copies_a_turn,
    fact_without_subject,
    grounded,
    source_stems,
    summary_problems,
    theme_copies,
)

__all__ = ["COPY_WORDS", "copies_a_turn", "fact_without_subject", "grounded", "source_stems", "summary_problems",
           "theme_copies"]

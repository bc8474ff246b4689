"""The shape of a profile trait: a short dimension, one sentence of evidence the user's own lines support, each
trait's evidence its own (issue 21).

The real 0.5B model (bench/real_llm_check.py, conv-26, persona-v5) answered its first persona call with seven
traits whose dimensions were the prompt's own words ("interests", "values", "habits", "personality", "life
situation", "main interests and goals", "traits") and whose evidence was one and the same 338-character text for
all seven: "The user has been working in mental health for the past year. She recently ran a charity race ..."
(the charity race was the assistant's line, the year in mental health nobody's). Nothing checked traits, so the
profile kept them; every later persona prompt carried the seven copies (about 600 of a 4k model's 2,048 prompt
tokens), and the calls that followed read 3, 2 and 1 pages instead of 4-14, while the answers, rewriting the
traits at length, took 84-188 s each. These pure functions keep a trait only when it is one:
- its evidence is cut to its first sentence within EVIDENCE_CHARS (the schema's maxLength; a server that does not
  enforce it sends more);
- the evidence is said in the call's pages' user lines, or restates the stored profile and facts
  (persona_quality.grounded), not in the assistant's lines;
- no two traits of one answer share their evidence (fact_form.near_copy): the first keeps it;
- the dimension is a few words and not a name the prompt gives the fields themselves.
persona_review applies them and counts what it drops; profile_merge stores what passes.
"""

from __future__ import annotations

from collections.abc import Sequence

from memoryos_workers.pipeline.fact_form import cut_at_word, near_copy, sentences
from memoryos_workers.pipeline.persona_quality import Memory, grounded
from schemas.persona import TraitUpdate

# Longest evidence and dimension, in characters (the persona schema's maxLength, answer_schemas): one short
# sentence, and a name of a few words ("interest: hiking"). Unbounded, the 0.5B model wrote 338 characters of
# evidence for every trait.
EVIDENCE_CHARS = 160
DIMENSION_CHARS = 40
DIMENSION_WORDS = 5
# What the prompt calls the answer's fields: a trait named so names no dimension of the user.
_FIELD_NAMES = frozenset({"trait", "traits", "profile", "summary", "dimension", "dimensions", "evidence", "level",
                          "user", "the user", "facts", "user facts"})


def evidence_sentence(evidence: str, cap: int = EVIDENCE_CHARS) -> str:
    """The evidence's first sentence within `cap` characters (cut at a word when even that is longer); "" when
    there is none."""
    parts = sentences(" ".join(evidence.split()))
    if not parts:
        return ""
    return cut_at_word(parts[0], cap)


def names_a_dimension(dimension: str) -> bool:
    """A trait's name is a few words and not one of the answer's own field names."""
    name = " ".join(dimension.lower().split()).strip(" :")
    return bool(name) and len(name) <= DIMENSION_CHARS and len(name.split()) <= DIMENSION_WORDS \
        and name not in _FIELD_NAMES


def review_traits(traits: Sequence[TraitUpdate], sources: frozenset[str], memory: Memory | None = None,
                  ) -> tuple[list[TraitUpdate], int, int]:
    """The traits that are traits, their evidence in shape; how many were dropped as invented (evidence not said
    in `sources`, the pages' user lines, nor restating `memory`: persona_quality.grounded) and as
    copies (evidence another trait of the answer has, or a field name for a dimension)."""
    kept: list[TraitUpdate] = []
    invented = copies = 0
    for trait in traits:
        evidence = evidence_sentence(trait.evidence)
        if not evidence or not names_a_dimension(trait.dimension):
            copies += 1
            continue
        if not grounded(evidence, sources, memory):
            invented += 1
            continue
        if any(near_copy(evidence, other.evidence) for other in kept):
            copies += 1
            continue
        kept.append(trait.model_copy(update={"evidence": evidence, "dimension": " ".join(trait.dimension.split())}))
    return kept, invented, copies

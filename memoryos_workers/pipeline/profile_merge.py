"""Merging a profile update into the stored profile: pure, so the rule is tested directly.

MemoryOS once replaced a whole profile with its LLM error string when a call failed; here a
profile only grows or is refined: an empty, error-like or much shorter summary keeps the old one,
and traits are revised, not replaced. The summary never grows past PROFILE_SUMMARY_TOKENS: a model that
appends round after round would otherwise push it out of every prompt's persona share (producers/context/fit.py).

Traits keep their evidence: the persona call is shown each trait with a short id ("T1", ...) and may name
the one an answered trait restates or revises (an enum in the schema, as facts name the facts they
supersede); an unnamed trait matches by dimension. The same level with new evidence refreshes the trait
(its turn appended, bounded, last_seen moved on); a re-emitted copy (same level and evidence sentence) is
no new evidence and changes nothing; another level or dimension revises it, with the new evidence, and
keeps what it was in `revisions`. A trait the answer does not mention stays. A named trait of another
category ("diet: ..." named by "interest: ...") is not linked (counted as ignored): as for facts, a link
across kinds is the small model copying ids, not a revision.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from memoryos_workers.pipeline.trait_form import evidence_sentence
from schemas.persona import ProfileUpdate, Trait, TraitRevision, TraitUpdate, UserProfile
from schemas.settings import PROFILE_SUMMARY_TOKENS
from schemas.tokens import estimate_tokens

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ERROR_LIKE = re.compile(r"^\s*(error\b|sorry\b|i('m| am) (sorry|unable)|i cannot|as an ai\b|none\b|n/a\b)", re.I)
MAX_TRAITS = 40
MAX_EVIDENCE_TURNS = 8  # the latest turns that showed a trait
MAX_REVISIONS = 4  # the latest earlier states of a trait


def looks_like_error(text: str) -> bool:
    return bool(_ERROR_LIKE.match(text))


def cap_summary(text: str, max_tokens: int = PROFILE_SUMMARY_TOKENS) -> str:
    """`text` when within `max_tokens`; else its first sentences that fit, or when the first alone does not,
    its first words that fit with an ellipsis."""
    if estimate_tokens(text) <= max_tokens:
        return text
    kept = ""
    for sentence in _SENTENCE_END.split(text):
        candidate = f"{kept} {sentence}".strip()
        if estimate_tokens(candidate) > max_tokens:
            break
        kept = candidate
    if kept:
        return kept
    words = text.split()
    while words and estimate_tokens(" ".join(words) + " …") > max_tokens:
        words.pop()
    return " ".join(words) + " …"


def trait_ids(profile: UserProfile | None) -> list[str]:
    """The short ids the persona call is shown the current traits under, in their stored order."""
    return [_short(i) for i in range(len(profile.traits))] if profile else []


def _short(index: int) -> str:
    return f"T{index + 1}"


def prompt_profile(profile: UserProfile | None) -> dict[str, Any] | None:
    """The profile as the persona call reads it: summary and traits with their short ids, without evidence
    turns, times or revisions (they cost tokens and tell the model nothing it can act on); evidence as its first
    sentence within the schema's bound (a profile stored before traits were reviewed held 338 characters of it
    per trait, a quarter of a 4k model's prompt for seven traits)."""
    if profile is None:
        return None
    return {"summary": profile.summary, "traits": [
        {"id": short, "dimension": t.dimension, "level": t.level, "evidence": evidence_sentence(t.evidence)}
        for short, t in zip(trait_ids(profile), profile.traits, strict=True)]}


def merge_profile(
    old: UserProfile | None, update: ProfileUpdate, *, user_id: str, now: float, llm_model: str, prompt_version: str,
    seen: Sequence[tuple[str, float]] | None = None, counts: Counter[str] | None = None,
) -> UserProfile:
    """`seen`: for each answered trait, the turn that shows it and that turn's time (without it, no turn
    and `now`). `counts` (when given) gets how many traits were added, refreshed, revised, and links ignored."""
    old_summary = old.summary if old else ""
    summary = cap_summary(update.summary.strip())
    if not summary or looks_like_error(summary) or len(summary) < 0.5 * len(old_summary):
        summary = old_summary
    evidence = list(seen) if seen is not None else [("", now)] * len(update.traits)
    counted = counts if counts is not None else Counter()
    traits = merge_traits(old.traits if old else [], update.traits, evidence, counted)
    return UserProfile(
        user_id=user_id, summary=summary, traits=traits, updated_at=now, llm_model=llm_model,
        prompt_version=prompt_version,
    )


def merge_traits(old: Sequence[Trait], updates: Sequence[TraitUpdate], seen: Sequence[tuple[str, float]],
                 counts: Counter[str]) -> list[Trait]:
    """The stored traits after one answer (see the module docstring); at most MAX_TRAITS, the least recently
    seen dropped first."""
    traits = [t.model_copy(deep=True) for t in old]
    ids = {_short(i): i for i in range(len(old))}
    by_key = {_key(t.dimension): i for i, t in enumerate(traits)}
    for update, (turn, at) in zip(updates, seen, strict=True):
        if not _key(update.dimension) or not update.evidence.strip() or looks_like_error(update.evidence):
            continue
        i = _target(update, traits, ids, by_key, counts)
        if i is None:
            by_key[_key(update.dimension)] = len(traits)
            traits.append(Trait(dimension=update.dimension.strip(), level=update.level,
                                evidence=update.evidence.strip(), evidence_turns=[turn] if turn else [],
                                first_seen=at, last_seen=at))
            counts["added"] += 1
        elif _key(traits[i].dimension) == _key(update.dimension) and traits[i].level == update.level:
            counts["refreshed"] += _refresh(traits[i], update, turn, at)
        else:
            by_key.pop(_key(traits[i].dimension), None)
            by_key[_key(update.dimension)] = i
            _revise(traits[i], update, turn, at)
            counts["revised"] += 1
    return _bounded(traits)


def _key(dimension: str) -> str:
    return " ".join(dimension.lower().split())


def _category(dimension: str) -> str | None:
    head, sep, _ = dimension.partition(":")
    return _key(head) if sep else None


def _target(update: TraitUpdate, traits: list[Trait], ids: dict[str, int], by_key: dict[str, int],
            counts: Counter[str]) -> int | None:
    """The stored trait an answered one is about: the shown one it names (when of the same category), else
    the one of its dimension, else none (a new trait)."""
    named = ids.get(update.id)
    if named is not None:
        mine, theirs = _category(update.dimension), _category(traits[named].dimension)
        if mine is None or theirs is None or mine == theirs:
            return named
        counts["ignored"] += 1
    return by_key.get(_key(update.dimension))


def _refresh(trait: Trait, update: TraitUpdate, turn: str, at: float) -> int:
    """New evidence for the trait as it is; a copy of it (the same sentence) is none. 1 when refreshed."""
    if " ".join(update.evidence.split()) == " ".join(trait.evidence.split()):
        return 0
    if turn and turn not in trait.evidence_turns:
        trait.evidence_turns = [*trait.evidence_turns, turn][-MAX_EVIDENCE_TURNS:]
    trait.last_seen = max(trait.last_seen or at, at)
    return 1


def _revise(trait: Trait, update: TraitUpdate, turn: str, at: float) -> None:
    """Evidence against the trait changes it, with that evidence; what it was is kept."""
    was = TraitRevision(at=at, by_turn=turn, dimension=trait.dimension, level=trait.level, evidence=trait.evidence,
                        evidence_turns=trait.evidence_turns)
    trait.revisions = [*trait.revisions, was][-MAX_REVISIONS:]
    trait.dimension, trait.level, trait.evidence = update.dimension.strip(), update.level, update.evidence.strip()
    trait.evidence_turns = [turn] if turn else []
    trait.last_seen = max(trait.last_seen or at, at)


def _bounded(traits: list[Trait]) -> list[Trait]:
    if len(traits) <= MAX_TRAITS:
        return traits
    recent = sorted(range(len(traits)), key=lambda i: (traits[i].last_seen or 0.0, i))[-MAX_TRAITS:]
    return [traits[i] for i in sorted(recent)]

"""Merging a profile update into the stored profile: pure, so the rule is tested directly.

MemoryOS once replaced a whole profile with its LLM error string when a call failed; here a
profile only grows or is refined: an empty, error-like or much shorter summary keeps the old one,
and traits merge by dimension. The summary never grows past PROFILE_SUMMARY_TOKENS: a model that appends
round after round would otherwise push it out of every prompt's persona share (producers/context/fit.py).
"""

from __future__ import annotations

import re

from schemas.persona import ProfileUpdate, Trait, UserProfile
from schemas.settings import PROFILE_SUMMARY_TOKENS
from schemas.tokens import estimate_tokens

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ERROR_LIKE = re.compile(r"^\s*(error\b|sorry\b|i('m| am) (sorry|unable)|i cannot|as an ai\b|none\b|n/a\b)", re.I)
MAX_TRAITS = 40


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


def merge_profile(
    old: UserProfile | None, update: ProfileUpdate, *, user_id: str, now: float, llm_model: str, prompt_version: str
) -> UserProfile:
    old_summary = old.summary if old else ""
    summary = cap_summary(update.summary.strip())
    if not summary or looks_like_error(summary) or len(summary) < 0.5 * len(old_summary):
        summary = old_summary
    traits: dict[str, Trait] = {t.dimension.strip().lower(): t for t in (old.traits if old else [])}
    for trait in update.traits:
        key = trait.dimension.strip().lower()
        if key and trait.evidence.strip() and not looks_like_error(trait.evidence):
            traits[key] = trait
    return UserProfile(
        user_id=user_id, summary=summary, traits=list(traits.values())[-MAX_TRAITS:], updated_at=now,
        llm_model=llm_model, prompt_version=prompt_version,
    )

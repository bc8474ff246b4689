"""The stored profile summary cannot grow without bound (memoryos_workers/pipeline/profile_merge.py)."""

from __future__ import annotations

from memoryos_workers.pipeline.profile_merge import cap_summary, merge_profile
from schemas.persona import ProfileUpdate
from schemas.settings import PROFILE_SUMMARY_TOKENS
from schemas.tokens import estimate_tokens


def test_summary_stays_within_its_cap_round_after_round() -> None:
    profile = None
    for round_ in range(30):
        old = profile.summary if profile else ""
        update = ProfileUpdate(summary=f"{old} In round {round_} the user told of a new trip to Lisbon.".strip(),
                               traits=[])
        profile = merge_profile(profile, update, user_id="u", now=float(round_), llm_model="m", prompt_version="p")
        assert estimate_tokens(profile.summary) <= PROFILE_SUMMARY_TOKENS
    assert profile is not None and profile.summary.startswith("In round 0")  # whole sentences, the first kept


def test_one_long_sentence_is_cut_at_a_word() -> None:
    text = "The user " + " and ".join(f"likes thing {i}" for i in range(200))
    cut = cap_summary(text)
    assert cut.endswith(" …") and text.startswith(cut.removesuffix(" …"))
    assert estimate_tokens(cut) <= PROFILE_SUMMARY_TOKENS
    assert cap_summary("A short portrait.") == "A short portrait."

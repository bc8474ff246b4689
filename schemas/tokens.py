"""The one token estimate of the project: what the LLM layer reserves for a call and what a retrieved
context may spend are measured with the same rule, so a context sized to fit a budget fits it there.

About four characters per token is the usual rule for English text; the LLM layer corrects its
reservations with the usage a provider reports, and a context budget only needs to be consistent.
"""

from __future__ import annotations

import math

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """Tokens `text` is taken to cost: ceil(characters / 4); additive up to rounding, so the sum of the
    estimates of parts is never below the estimate of the parts joined."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)

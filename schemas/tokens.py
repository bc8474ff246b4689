"""The token estimate of a retrieved context's budget: what a context may spend is measured with one
fixed rule on both sides (producers and workers), so a context sized to fit a budget fits it there.

About four characters per token is the usual rule for English text, and a context budget only needs to
be consistent. The LLM layer sizes its own prompts to the model's window with a count calibrated per
model by the usage the provider reports (memoryos_workers/llm/token_count.py).
"""

from __future__ import annotations

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """Tokens `text` is taken to cost: ceil(characters / 4); additive up to rounding, so the sum of the
    estimates of parts is never below the estimate of the parts joined."""
    return -(-len(text) // CHARS_PER_TOKEN)  # tokens_for_chars, inlined: a fit estimates about 130 texts


def tokens_for_chars(chars: int) -> int:
    """`estimate_tokens` of a text of `chars` characters (for a size computed without the text): the ceiling
    of chars / 4, in integers (the same as math.ceil of the quotient for any length a text has)."""
    return -(-chars // CHARS_PER_TOKEN)

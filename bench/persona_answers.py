"""What a model wrote in each persona answer and what the post-check kept of it, for bench/real_llm_check.py.

The product keeps no user text in its logs, so a real-model run could only be read through the post-check's
counts: at 080e2a8 and 60603cd the 0.5B model's 25 user facts were all dropped as "not said in the pages",
and nobody could say whether they were invented or the assistant's lines credited to the user. The benchmark
drives the workers in its own process, so it records each review (pipeline/persona_review.py `review`, first
answers and retries alike) on its side, into its results file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from schemas.persona import PersonaExtraction

COUNTS = ("written", "rejected", "invented_facts", "invented_sentences", "near_copies", "chat", "quoted",
          "invented_traits", "copied_traits")


def _texts(value: PersonaExtraction) -> dict[str, Any]:
    return {"summary": value.profile.summary, "user_facts": [f.text for f in value.user_facts],
            "user_quotes": [f.quote for f in value.user_facts],
            "assistant_facts": [f.text for f in value.assistant_facts],
            "traits": [f"{t.dimension}: {t.evidence}" for t in value.profile.traits]}


@contextmanager
def recording() -> Iterator[list[dict[str, Any]]]:
    """Every persona answer reviewed inside the block, as {"written": ..., "kept": ..., "counts": ...}."""
    from memoryos_workers.pipeline import persona_review

    answers: list[dict[str, Any]] = []
    review = persona_review.review

    def recorded(value: PersonaExtraction, *args: Any, **kwargs: Any) -> Any:
        out = review(value, *args, **kwargs)
        answers.append({"written": _texts(value), "kept": _texts(out.value),
                        "counts": {name: getattr(out, name) for name in COUNTS}})
        return out

    persona_review.review = recorded
    try:
        yield answers
    finally:
        persona_review.review = review

"""The shapes of a successful answer on the wire: chat.completion and model objects, token usage.

Kept apart from the decision of *what* to answer (:mod:`.answers`), so another shape of the same
answer (a stream of chunks, a ``length`` finish) is added here without touching that logic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

#: Plain-text answer when no response_format is requested and nothing scripted the answer.
DEFAULT_TEXT_ANSWER = "This is a fake answer."


def estimate_tokens(text: str) -> int:
    """Token estimate used for ``usage``: ceil(len/4) -- the usual rule of thumb for English."""
    return math.ceil(len(text) / 4)


def message_text(messages: Any) -> str:
    """Concatenate the text of all messages (string content or a list of text parts)."""
    parts: list[str] = []
    if not isinstance(messages, list):
        return ""
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    parts.append(part["text"])
    return "".join(parts)


def completion_body(
    completion_id: str, model: str, content: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    """A ``chat.completion`` object with one choice, as the openai client parses it."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def model_object(model_id: str) -> dict[str, Any]:
    """One entry of ``GET /v1/models``."""
    return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": "fake-llm"}

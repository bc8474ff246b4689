"""The shapes of a successful answer on the wire: chat.completion and model objects, token usage.

Kept apart from the decision of *what* to answer (:mod:`.answers`): the same answer goes out whole
or as a stream of chunks (paced on the wire by :mod:`.httpd`), ending with "stop" or "length".
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

#: Plain-text answer when no response_format is requested and nothing scripted the answer.
DEFAULT_TEXT_ANSWER = "This is a fake answer."
CHARS_PER_TOKEN = 4  # the fake's token: its usage counts ceil(characters / 4)
FAST_PIECE_TOKENS = 16  # an unpaced stream still comes in several chunks, as real ones do


def estimate_tokens(text: str) -> int:
    """Token estimate used for ``usage``: ceil(len/4) -- the usual rule of thumb for English."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


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
    completion_id: str, model: str, content: str, prompt_tokens: int, completion_tokens: int,
    finish_reason: str = "stop",
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
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage_body(prompt_tokens, completion_tokens),
    }


def usage_body(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def stream_chunks(
    completion_id: str, model: str, content: str, finish_reason: str, usage: dict[str, int] | None, *, paced: bool
) -> list[dict[str, Any]]:
    """The same answer as ``chat.completion.chunk`` objects, as OpenAI streams it: the role with the
    first piece, one chunk per piece (one token when `paced`, a few otherwise), one with the
    finish_reason, then -- when the request asked ``stream_options.include_usage`` and `usage` is
    given -- one with no choices and the usage (every earlier chunk then carries ``usage: null``)."""
    size = CHARS_PER_TOKEN if paced else CHARS_PER_TOKEN * FAST_PIECE_TOKENS
    pieces = [content[i : i + size] for i in range(0, len(content), size)] or [""]
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "system_fingerprint": "fp_fake"}  # fmt: skip

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        body = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if usage is not None:
            body["usage"] = None
        return body

    chunks = [chunk({"role": "assistant", "content": pieces[0]})]
    chunks += [chunk({"content": piece}) for piece in pieces[1:]]
    chunks.append(chunk({}, finish_reason))
    if usage is not None:
        chunks.append({**base, "choices": [], "usage": usage})
    return chunks


def model_object(model_id: str) -> dict[str, Any]:
    """One entry of ``GET /v1/models``."""
    return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": "fake-llm"}

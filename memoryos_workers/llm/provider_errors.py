"""Recognising a provider's "the prompt does not fit the context window" among its errors.

Every server words it its own way, and the status is not reliable either (llama.cpp answered 500 for a
while, some send the error inside the stream), so the error's text and body are read. Such an error
must never be retried as it is: the same prompt fails the same way. The numbers the message gives
(window, tokens requested, tokens in the prompt) are kept: the prompt count calibrates the estimate.

Forms recognised (status 400 unless said):
- OpenAI: code ``context_length_exceeded``, "This model's maximum context length is 8192 tokens.
  However, your messages resulted in 9000 tokens" / "you requested 9000 tokens (8000 in the messages,
  1000 in the completion)".
- vLLM: the same sentences; also "maximum context length is 4096 tokens and your request has 3000
  input tokens", "is too long to fit into the model (context length 4096)", "longer than the maximum
  model length of 4096", "Input prompt (5000 tokens) is too long and exceeds limit of 4096".
- llama.cpp: type ``exceed_context_size_error`` with ``n_prompt_tokens`` and ``n_ctx``, "the request
  exceeds the available context size, try increasing it" (older builds: status 500).
- Ollama: "prompt too long; exceeded max context length by 100 tokens", "input exceeds maximum
  context length", "input length exceeds the context length".
- LM Studio: "... the model is loaded with context length of only 4096 tokens, which is not enough".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import openai

_CODES = ("context_length_exceeded", "exceed_context_size_error", "model_context_window_exceeded")
_SENTENCES = re.compile(
    r"maximum context length|max(imum)? context (length|size)|context length exceeded"
    r"|exceeds? (the )?(available |maximum )?context (length|size|window)"
    r"|exceeds? the model'?s? (maximum )?context|context window exceeded"
    r"|too long to fit into the model|longer than the maximum model length|maximum model length"
    r"|prompt (is )?too long|input prompt \(\d+ tokens\) is too long"
    r"|context length of only \d+|longer than the model'?s context length",
    re.IGNORECASE,
)
_LIMIT = (
    re.compile(r"maximum context length is (\d+)", re.I),
    re.compile(r"context length of (?:only )?(\d+)", re.I),
    re.compile(r"\(context length (\d+)\)", re.I),
    re.compile(r"maximum model length of (\d+)", re.I),
    re.compile(r"exceeds limit of (\d+)", re.I),
    re.compile(r"model's context length \((\d+) tokens\)", re.I),
)
_REQUESTED = (
    re.compile(r"you requested (\d+) tokens", re.I),
    re.compile(r"resulted in (\d+) tokens", re.I),
    re.compile(r"request has (\d+) input tokens", re.I),
    re.compile(r"total length (\d+)", re.I),
    re.compile(r"prompt \(length (\d+)\)", re.I),
    re.compile(r"input prompt \((\d+) tokens\)", re.I),
    re.compile(r"the input \((\d+) tokens\)", re.I),
)
_PROMPT = (
    re.compile(r"\((\d+) in the messages", re.I),
    re.compile(r"messages resulted in (\d+) tokens", re.I),
    re.compile(r"request has (\d+) input tokens", re.I),
    re.compile(r"input prompt \((\d+) tokens\)", re.I),
)


@dataclass(frozen=True)
class Overflow:
    """What an overflow error said: the window, the tokens requested, the prompt's own tokens."""

    message: str
    limit: int | None = None
    requested: int | None = None
    prompt_tokens: int | None = None


def context_overflow(exc: BaseException) -> Overflow | None:
    """The overflow `exc` reports, or None when it is another error."""
    if not isinstance(exc, openai.APIError) or isinstance(exc, (openai.RateLimitError, openai.APIConnectionError)):
        return None
    body = exc.body if isinstance(exc.body, Mapping) else {}
    message = str(body.get("message") or (exc.body if isinstance(exc.body, str) else "") or exc.message or "")
    text = f"{message} {exc}"
    tags = {str(v).lower() for v in (getattr(exc, "code", None), getattr(exc, "type", None),
                                     body.get("code"), body.get("type"))}
    if not (tags & set(_CODES) or _SENTENCES.search(text)):
        return None
    limit = _int(body.get("n_ctx")) or _first(_LIMIT, text)
    prompt = _int(body.get("n_prompt_tokens")) or _first(_PROMPT, text)
    requested = _first(_REQUESTED, text) or prompt
    return Overflow(message=message or str(exc), limit=limit, requested=requested, prompt_tokens=prompt)


def _first(patterns: tuple[re.Pattern[str], ...], text: str) -> int | None:
    for pattern in patterns:
        match = pattern.search(text)
        if match:
            return int(match.group(1))
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

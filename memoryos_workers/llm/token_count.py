"""How many tokens a prompt takes for this model, learned from what the provider reports.

Prompts are sized to the model's window before they are sent, so the count has to be right without a
tokenizer: the model behind an OpenAI-compatible URL is unknown (a local Qwen, a hosted GPT), and no
one tokenizer library covers them all offline. Instead the count is characters / (characters per
token), and that ratio is learned per model from the prompt tokens each answer reports: running sums
of the characters sent and the tokens counted, kept in Redis so every worker of a deployment shares
them (a new worker starts calibrated), halved now and then so recent calls weigh more.

A provider that reports no usage in streams (llama.cpp's servers) is asked a few whole answers,
which carry it, until the count is calibrated (the LLM client does that).

Before any sample the ratio is 3.5 characters per token: about 4 is the rule for English prose, and
prompts that are mostly JSON, names and dates, or not in English, tokenize denser; counting a little
high costs a little room, counting low costs a refused call. The prior counts as a few hundred tokens
of evidence, so the first answers move the ratio most of the way and a single odd report cannot.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping

import redis

from memoryos_workers.llm.base import Prompt
from producers.wire.scripts import lua_source

log = logging.getLogger("memoryos.llm")

PRIOR_CHARS_PER_TOKEN = 3.5
PRIOR_TOKENS = 500.0  # the prior weighs as much as this many reported tokens
CALIBRATED_TOKENS = 2000.0  # evidence after which the learned ratio outweighs the prior four to one
MESSAGE_OVERHEAD_CHARS = 16  # a chat template wraps each message in a few tokens (role, separators)
PLAUSIBLE = (1.0, 12.0)  # characters per token outside this: a provider reporting nonsense (e.g. 0)
DECAY_CAP = 200_000.0  # tokens of evidence kept; past it the sums are halved
REFRESH_SECONDS = 5.0  # how stale another worker's learning may be in this process
TTL_SECONDS = 30 * 86_400  # a model not used for a month is forgotten


def prompt_chars(prompt: Prompt) -> int:
    """Characters of a text, or of chat messages with each message's template overhead."""
    if isinstance(prompt, str):
        return len(prompt)
    total = 0
    for message in prompt:
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):  # content parts
            total += sum(len(part.get("text") or "") for part in content if isinstance(part, Mapping))
        total += MESSAGE_OVERHEAD_CHARS
    return total


class TokenCounter:
    """One model's calibrated token count; shared through Redis when given a client and key."""

    def __init__(self, client: redis.Redis | None = None, key: str | None = None) -> None:
        self._redis = client if key else None
        self._key = key
        self._script = client.register_script(lua_source("token_calibration")) if client is not None and key else None
        self._lock = threading.Lock()
        self._chars = 0.0  # evidence beyond the prior
        self._tokens = 0.0
        self._read_at = -math.inf

    @property
    def chars_per_token(self) -> float:
        self._refresh()
        with self._lock:
            return (PRIOR_CHARS_PER_TOKEN * PRIOR_TOKENS + self._chars) / (PRIOR_TOKENS + self._tokens)

    @property
    def calibrated(self) -> bool:
        """Whether enough reported tokens were seen (by any worker) for the ratio to be mostly learned."""
        self._refresh()
        with self._lock:
            return self._tokens >= CALIBRATED_TOKENS

    def count(self, prompt: Prompt) -> int:
        """Tokens `prompt` (a text or chat messages) takes, by the ratio learned so far."""
        return math.ceil(prompt_chars(prompt) / self.chars_per_token)

    def learn(self, prompt: Prompt, reported_tokens: int) -> None:
        """Takes the prompt tokens a provider counted for `prompt` as evidence (implausible reports are
        ignored: some servers report 0)."""
        chars = prompt_chars(prompt)
        if reported_tokens <= 0 or not PLAUSIBLE[0] <= chars / reported_tokens <= PLAUSIBLE[1]:
            log.debug("ignoring an implausible token count: %d characters as %d tokens", chars, reported_tokens)
            return
        if self._script is not None:
            try:
                total_chars, total_tokens = self._script(
                    keys=[self._key], args=[chars, reported_tokens, DECAY_CAP, TTL_SECONDS]
                )
                self._set(float(total_chars), float(total_tokens))
                return
            except redis.RedisError as exc:
                log.warning("could not share the token calibration through Redis (%s); learning locally", exc)
        with self._lock:
            self._chars += chars
            self._tokens += reported_tokens
            if self._tokens > DECAY_CAP:
                factor = DECAY_CAP / 2 / self._tokens
                self._chars *= factor
                self._tokens *= factor

    def _set(self, chars: float, tokens: float) -> None:
        with self._lock:
            self._chars, self._tokens = chars, tokens
            self._read_at = time.monotonic()

    def _refresh(self) -> None:
        """Picks up what other workers learned, at most every REFRESH_SECONDS."""
        if self._redis is None or time.monotonic() - self._read_at < REFRESH_SECONDS:
            return
        try:
            chars, tokens = self._redis.hmget(self._key, "chars", "tokens")
        except redis.RedisError as exc:
            log.warning("could not read the token calibration from Redis (%s); using the last one known", exc)
            self._read_at = time.monotonic()
            return
        if chars is not None and tokens is not None:
            self._set(float(chars), float(tokens))
        else:
            with self._lock:
                self._read_at = time.monotonic()

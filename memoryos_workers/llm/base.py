"""What the pipeline asks of an LLM and of a token budget, and the outcomes it handles.

The pipeline stages and the answer generator only ever make a structured call (validated against a
pydantic model) or a plain-text one, and react to a few outcomes: an answer with its usage, no
usable answer (:class:`LLMError`: take the fallback or dead-letter), no LLM configured, the
shared budget spent (:class:`LLMRateLimited`: retry the work later), a prompt too long for the
model's window (:class:`LLMContextOverflow`) or an answer cut at its budget (:class:`LLMTruncated`):
make the work smaller. Prompts are sized beforehand with the LLM's ``prompt_budget`` and
``count_tokens``. Those are defined here, apart
from the openai adapter (:mod:`.client`), so an in-process stub (:mod:`.stub`) can stand in for it
as dramatiq's ``StubBroker`` stands in for a real broker.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

#: What a token count takes: a text, or chat messages.
Prompt = str | Sequence[Mapping[str, Any]]
SAFETY_MARGIN = 0.05  # of the window, kept free of prompt and answer: a token count is an estimate
MIN_SAFETY_TOKENS = 64


class LLMError(Exception):
    """The LLM gave no usable answer after every attempt; callers fall back or dead-letter."""

    usage: Usage | None = None  # what the failed attempts cost, for the counters


class LLMNotConfigured(LLMError):
    pass


class LLMRateLimited(LLMError):
    """The shared token budget is committed too far ahead: not a failure of the LLM, so callers retry
    the work later instead of taking a fallback."""


class MalformedOutput(LLMError):
    """The answer was not valid JSON for the schema (or failed the caller's consistency check)."""


class LLMContextOverflow(LLMError):
    """The provider refused the prompt as longer than the model's context window. Sending it again
    cannot help: the caller sends less (and this is no failure of the work, so it never counts toward
    a dead letter). ``limit`` and ``requested`` are the token counts the provider's message gave."""

    def __init__(self, message: str, *, limit: int | None = None, requested: int | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.requested = requested


class LLMTruncated(LLMError):
    """The answer ended at its token budget (finish_reason "length"). ``partial_text`` is what arrived,
    so a caller may keep its valid part; asking the same again would be cut the same way."""

    def __init__(self, message: str, *, partial_text: str = "") -> None:
        super().__init__(message)
        self.partial_text = partial_text


class RateLimited(Exception):
    """The budget is committed further ahead than the caller may wait."""


@dataclass
class Usage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens


@dataclass
class Structured(Generic[M]):
    value: M
    usage: Usage


@runtime_checkable
class LLM(Protocol):
    """An LLM as the pipeline calls it (adapter: :class:`~memoryos_workers.llm.client.LLMClient`)."""

    #: False when no endpoint is set: callers skip LLM work (structured() would raise LLMNotConfigured).
    configured: bool

    def structured(
        self,
        messages: list[dict[str, str]],
        model: type[M],
        *,
        check: Callable[[M], Any] | None = None,
        name: str | None = None,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
    ) -> Structured[M]:
        """An answer valid for ``model`` that passes ``check`` (which raises MalformedOutput to ask
        again); raises LLMError when there is none, LLMRateLimited when the budget is spent, and at
        once (never asking the same again) LLMContextOverflow or LLMTruncated. ``schema`` replaces the
        schema derived from ``model`` on the wire; ``max_tokens`` is this answer's budget."""
        ...

    def prompt_budget(self, max_tokens: int | None = None) -> int:
        """Tokens a prompt may take so that it and an answer of ``max_tokens`` (default: the
        configured completion budget) fit the model's window, with a safety margin."""
        ...

    def count_tokens(self, messages_or_text: Prompt) -> int:
        """Tokens a prompt takes for this model (an estimate, calibrated by what the provider reports)."""
        ...

    def text(self, messages: list[dict[str, str]], *, temperature: float = 0.7) -> tuple[str, Usage]:
        """A plain-text answer (replies to the user); raises LLMError when there is none."""
        ...


@runtime_checkable
class Budget(Protocol):
    """A tokens-per-minute budget as the LLM client draws on it (adapter:
    :class:`~memoryos_workers.llm.token_budget.TokenBudget`, shared through Redis)."""

    def fit(self, tokens: int) -> int:
        """What a call estimated at ``tokens`` reserves (a budget may cap it)."""
        ...

    def reserve(self, tokens: int) -> float:
        """Take ``fit(tokens)`` before a background call, waiting until they are available; returns
        the seconds waited. Raises RateLimited, taking nothing, rather than wait too long."""
        ...

    def charge(self, tokens: int) -> None:
        """Record tokens spent without waiting (negative: give back a reservation not used)."""
        ...


def prompt_room(window: int, answer: int) -> int:
    """Tokens left for a prompt in a `window` that must also hold an `answer`, less the safety margin;
    ValueError when none are."""
    room = window - answer - max(MIN_SAFETY_TOKENS, math.ceil(window * SAFETY_MARGIN))
    if room <= 0:
        raise ValueError(
            f"an answer of {answer} tokens leaves no room for a prompt in a {window}-token window "
            "(MEMORYOS_LLM_CONTEXT_TOKENS); ask for a shorter answer"
        )
    return room

"""What the pipeline asks of an LLM and of a token budget, and the outcomes it handles.

The pipeline stages and the answer generator only ever make a structured call (validated against a
pydantic model) or a plain-text one, and react to a few outcomes: an answer with its usage, no
usable answer (:class:`LLMError`: take the fallback or dead-letter), no LLM configured, or the
shared budget spent (:class:`LLMRateLimited`: retry the work later). Those are defined here, apart
from the openai adapter (:mod:`.client`), so an in-process stub (:mod:`.stub`) can stand in for it
as dramatiq's ``StubBroker`` stands in for a real broker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


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
    ) -> Structured[M]:
        """An answer valid for ``model`` that passes ``check`` (which raises MalformedOutput to ask
        again); raises LLMError when there is none, LLMRateLimited when the budget is spent."""
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

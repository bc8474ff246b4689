"""An LLM and a token budget in-process, for unit tests of the stages that call them.

The fake OpenAI server (:mod:`memoryos_workers.testing.fake_llm`) tests what the adapter does on the
wire; a test of what a stage does with an answer (or with a failure) needs none of that. The stub
answers each call with the next scripted value, checks it as the adapter does (JSON validation
against the requested model, then the caller's ``check``, asking again up to ``max_attempts``) and
records every call. As dramatiq's ``StubBroker``, it keeps the real interface
(:class:`~memoryos_workers.llm.base.LLM`), so the stage under test cannot tell the difference.
"""

from __future__ import annotations

import collections
import json
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from memoryos_workers.llm.base import (
    LLMError,
    LLMNotConfigured,
    MalformedOutput,
    Prompt,
    RateLimited,
    Structured,
    Usage,
    prompt_room,
)
from memoryos_workers.llm.token_count import prompt_chars

M = TypeVar("M", bound=BaseModel)

#: What a call may be answered with: a pydantic value or a JSON-able mapping (checked against the
#: requested model), a str (the answer to a text call), or an exception to raise (e.g. LLMError to
#: make the stage take its fallback, LLMRateLimited to make it wait for the budget).
Answer = BaseModel | Mapping[str, Any] | str | BaseException


@dataclass(frozen=True)
class StubCall:
    """One call the stub received (one attempt: a re-asked call is recorded again)."""

    name: str  # the schema name ("segmentation", "persona"), or "text"
    messages: list[dict[str, str]]
    model: type[BaseModel] | None  # None for a text call
    schema: dict[str, Any] | None = None  # the call's own schema (schema=), if it brought one
    max_tokens: int | None = None  # the call's answer budget (max_tokens=), if it set one


class StubLLM:
    """Answers from a queue (:meth:`queue`), else from ``responder(call)``; records ``calls``."""

    def __init__(
        self,
        responder: Callable[[StubCall], Answer] | None = None,
        *,
        configured: bool = True,
        max_attempts: int = 1,
        text_answer: str = "A stub answer.",
        context_tokens: int = 1_000_000,  # no window to speak of unless a test sets one
        completion_tokens: int = 2048,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.responder = responder
        self.configured = configured
        self.max_attempts = max_attempts
        self.text_answer = text_answer
        self.context_tokens = context_tokens  # the window and answer budget prompt_budget() sizes for
        self.completion_tokens = completion_tokens
        self.calls: list[StubCall] = []
        self.totals = Usage()
        self._queue: collections.deque[Answer] = collections.deque()
        self._lock = threading.Lock()

    def queue(self, answers: Iterable[Answer]) -> None:
        """Script the next answers, in order; they win over the responder."""
        with self._lock:
            self._queue.extend(answers)

    @property
    def pending(self) -> int:
        """Queued answers not used yet (assert 0 to check a script ran fully)."""
        with self._lock:
            return len(self._queue)

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
        """As the adapter: validated against ``model`` and ``check``; LLMError once attempts run out.
        ``schema`` and ``max_tokens`` are recorded on the call (a scripted LLMContextOverflow or
        LLMTruncated is raised as it is, as the adapter raises them: at once)."""
        self._require_configured()
        usage = Usage()
        attempts = 0
        try:
            while True:
                attempts += 1
                call = StubCall(name or model.__name__, list(messages), model, schema, max_tokens)
                answer = self._next(call, usage)
                try:
                    value = _validate(answer, model)
                    if check is not None:
                        check(value)
                except MalformedOutput as exc:
                    if attempts < self.max_attempts:
                        continue
                    error = LLMError(f"MalformedOutput: {exc}")
                    error.usage = usage
                    raise error from exc
                return Structured(value, usage)
        finally:
            with self._lock:
                self.totals.add(usage)

    def text(self, messages: list[dict[str, str]], *, temperature: float = 0.7) -> tuple[str, Usage]:
        """The next scripted str, else ``text_answer``."""
        self._require_configured()
        usage = Usage()
        try:
            answer = self._next(StubCall("text", list(messages), None), usage, default=self.text_answer)
            if not isinstance(answer, str):
                raise TypeError(f"a text call was answered with {type(answer).__name__}, not str")
            return answer, usage
        finally:
            with self._lock:
                self.totals.add(usage)

    def prompt_budget(self, max_tokens: int | None = None) -> int:
        """As the adapter, for ``context_tokens`` and ``completion_tokens``."""
        return prompt_room(self.context_tokens, max_tokens or self.completion_tokens)

    def count_tokens(self, messages_or_text: Prompt) -> int:
        """Four characters a token (what the stub charges too), with the adapter's per-message overhead."""
        return _tokens(prompt_chars(messages_or_text))

    def _require_configured(self) -> None:
        if not self.configured:
            raise LLMNotConfigured("no LLM configured (StubLLM(configured=False))")

    def _next(self, call: StubCall, usage: Usage, default: Answer | None = None) -> Answer:
        """Record the call, count it, and take its answer; a scripted exception is raised here."""
        with self._lock:
            self.calls.append(call)
            answer = self._queue.popleft() if self._queue else None
        if answer is None and self.responder is not None:
            answer = self.responder(call)
        if answer is None:
            answer = default
        if answer is None:
            raise LookupError(
                f"StubLLM has no answer for the {call.name!r} call: queue one with .queue([...]) or give a responder"
            )
        usage.calls += 1
        usage.prompt_tokens += _tokens(sum(len(m.get("content") or "") for m in call.messages))
        if isinstance(answer, BaseException):
            if isinstance(answer, LLMError) and answer.usage is None:
                answer.usage = usage
            raise answer
        usage.completion_tokens += _tokens(len(_as_json(answer)))
        return answer


class StubBudget:
    """A budget that never waits and records what the client draws on it.

    ``reserved`` and ``charged`` list every reservation and correction in order; ``capacity`` caps
    what one call reserves, as :class:`~memoryos_workers.llm.token_budget.TokenBudget` caps it at a
    minute's budget; ``refuse`` makes :meth:`reserve` raise RateLimited (a budget spent far ahead).
    """

    def __init__(self, capacity: int | None = None, *, refuse: bool = False) -> None:
        self.capacity = capacity
        self.refuse = refuse
        self.reserved: list[int] = []
        self.charged: list[int] = []
        self._lock = threading.Lock()

    def fit(self, tokens: int) -> int:
        return tokens if self.capacity is None else min(tokens, self.capacity)

    def reserve(self, tokens: int) -> float:
        if self.refuse:
            raise RateLimited("the stub budget refuses every reservation (StubBudget(refuse=True))")
        with self._lock:
            self.reserved.append(self.fit(tokens))
        return 0.0

    def charge(self, tokens: int) -> None:
        if tokens:
            with self._lock:
                self.charged.append(tokens)

    @property
    def spent(self) -> int:
        """Tokens drawn in all: reservations plus their corrections."""
        with self._lock:
            return sum(self.reserved) + sum(self.charged)


def _validate(answer: Answer, model: type[M]) -> M:
    """Through JSON, as the adapter validates the provider's text: what the stub accepts, it would too."""
    try:
        return model.model_validate_json(_as_json(answer))
    except ValidationError as exc:
        raise MalformedOutput(f"answer does not match {model.__name__}: {exc}") from exc


def _as_json(answer: Answer) -> str:
    if isinstance(answer, BaseModel):
        return answer.model_dump_json()
    if isinstance(answer, str):
        return answer
    return json.dumps(answer)


def _tokens(chars: int) -> int:
    return math.ceil(chars / 4)

"""The LLM adapter: structured outputs through any OpenAI-compatible endpoint.

The openai client runs with max_retries=0: the retries here are the only ones, so a call's cost and
latency are bounded by settings. Answers stream (:mod:`.completion`): the timeout is on silence, so a
slow local model finishes and a stalled one is cut. Malformed output counts as a failed attempt like a
500. Two outcomes are never retried as the same request, because the same request fails the same way:
the prompt does not fit the model's window (:class:`LLMContextOverflow`) and the answer was cut at its
token budget (:class:`LLMTruncated`); the caller makes the work smaller. Prompts are sized with
:meth:`LLMClient.prompt_budget` and :meth:`LLMClient.count_tokens`, calibrated by the usage providers
report (:mod:`.token_count`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import openai
from pydantic import BaseModel, ValidationError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from memoryos_workers.llm.base import (
    Budget,
    LLMContextOverflow,
    LLMError,
    LLMNotConfigured,
    LLMRateLimited,
    LLMTruncated,
    MalformedOutput,
    Prompt,
    RateLimited,
    Structured,
    Usage,
    prompt_room,
)
from memoryos_workers.llm.completion import Completion, Endpoint
from memoryos_workers.llm.provider_errors import context_overflow
from memoryos_workers.llm.token_count import TokenCounter
from memoryos_workers.tracing import llm_call
from schemas.settings import Settings

log = logging.getLogger("memoryos.llm")
M = TypeVar("M", bound=BaseModel)

TRANSIENT = (
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.RateLimitError,
    openai.InternalServerError,
)
# The outcomes live in base.py (shared with the stub); importing them from here keeps working.
__all__ = [
    "LLMClient", "LLMContextOverflow", "LLMError", "LLMNotConfigured", "LLMRateLimited", "LLMTruncated",
    "MalformedOutput", "Structured", "Usage", "response_schema",
]  # fmt: skip


def response_schema(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAI's strict form of the model's JSON schema (every field required, no extra keys)."""
    try:
        from openai.lib._pydantic import to_strict_json_schema

        return to_strict_json_schema(model)
    except Exception:  # noqa: BLE001 - private helper moved: the plain schema works non-strict
        return model.model_json_schema()


class LLMClient:
    """The :class:`~memoryos_workers.llm.base.LLM` over an OpenAI-compatible endpoint."""

    def __init__(self, settings: Settings, budget: Budget | None = None, counter: TokenCounter | None = None) -> None:
        self.settings = settings
        self.budget = budget  # background calls wait for it; answers to users are only charged
        self.counter = counter or TokenCounter()  # without Redis: calibrated in this process only
        self.configured = bool(settings.openai_api_key or settings.openai_base_url)
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-needed"
        silence = settings.llm_timeout
        client = openai.OpenAI(
            api_key=key,
            base_url=settings.openai_base_url,
            max_retries=0,
            timeout=openai.Timeout(silence, connect=min(silence, 10.0)),  # read = the longest silence
        )
        self._endpoint = Endpoint(
            client, settings.llm_model, silence=silence, call_cap=settings.llm_call_timeout, stream=settings.llm_stream
        )
        self._lock = threading.Lock()
        self.totals = Usage()

    # -- sizing prompts --------------------------------------------------------------------------------

    def count_tokens(self, messages_or_text: Prompt) -> int:
        """Tokens a prompt (chat messages or a text) takes for this model, by the calibrated estimate."""
        return self.counter.count(messages_or_text)

    def prompt_budget(self, max_tokens: int | None = None) -> int:
        """Tokens a prompt may take so that it and an answer of `max_tokens` (default
        MEMORYOS_LLM_COMPLETION_TOKENS) fit the window, less a safety margin for the estimate."""
        return prompt_room(self.settings.llm_context_tokens, max_tokens or self.settings.llm_completion_tokens)

    # -- calls -----------------------------------------------------------------------------------------

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
        """Call until the answer validates against `model` (and passes `check`, which raises
        MalformedOutput to ask again); raises LLMError after settings.llm_max_attempts.

        `schema` (a JSON schema, strict form) replaces the one derived from `model`, so a call can send
        a schema built for it; `max_tokens` is this answer's budget (default
        MEMORYOS_LLM_COMPLETION_TOKENS). LLMContextOverflow and LLMTruncated are raised at once."""
        self._require_configured()
        usage = Usage()
        retrying = Retrying(
            stop=stop_after_attempt(self.settings.llm_max_attempts),
            wait=wait_random_exponential(multiplier=self.settings.llm_backoff_base, max=self.settings.llm_backoff_max),
            retry=retry_if_exception_type((*TRANSIENT, MalformedOutput)),
            reraise=True,
        )
        call = _Call(
            messages, schema or response_schema(model), name or model.__name__,
            max_tokens or self.settings.llm_completion_tokens,
        )  # fmt: skip
        try:
            value = retrying(self._attempt, call, model, check, usage)
        except RateLimited as exc:
            raise self._failed(LLMRateLimited(str(exc)), usage) from exc
        except (LLMContextOverflow, LLMTruncated) as exc:
            raise self._failed(exc, usage) from None
        except (*TRANSIENT, MalformedOutput, openai.APIError) as exc:
            raise self._failed(LLMError(self._describe(exc)), usage) from exc
        finally:
            with self._lock:
                self.totals.add(usage)
        return Structured(value, usage)

    def _attempt(self, call: _Call, model: type[M], check: Callable[[M], Any] | None, usage: Usage) -> M:
        answer = self._complete(call, usage, temperature=0.0, background=True)
        if answer.finish_reason == "length":
            raise LLMTruncated(
                f"the answer was cut at its budget of {call.max_tokens} tokens (finish_reason 'length') after "
                f"{len(answer.text)} characters: ask for less in one call, or raise MEMORYOS_LLM_COMPLETION_TOKENS",
                partial_text=answer.text,
            )
        try:
            value = model.model_validate_json(answer.text)
        except ValidationError as exc:
            raise MalformedOutput(f"answer does not match {call.name}: {_short(exc)}") from exc
        if check is not None:
            check(value)
        return value

    def text(self, messages: list[dict[str, str]], *, temperature: float = 0.7) -> tuple[str, Usage]:
        """Plain text generation (responses to the user); same retry policy, no schema. An answer cut at
        the provider's length limit is returned as it is: a user reads it better than nothing."""
        self._require_configured()
        usage = Usage()
        call = _Call(messages, None, "answer", None)
        retrying = Retrying(
            stop=stop_after_attempt(self.settings.llm_max_attempts),
            wait=wait_random_exponential(multiplier=self.settings.llm_backoff_base, max=self.settings.llm_backoff_max),
            retry=retry_if_exception_type(TRANSIENT),
            reraise=True,
        )
        try:
            answer = retrying(self._complete, call, usage, temperature=temperature, background=False)
        except LLMContextOverflow as exc:
            raise self._failed(exc, usage) from None
        except (*TRANSIENT, openai.APIError) as exc:
            raise self._failed(LLMError(self._describe(exc)), usage) from exc
        finally:
            with self._lock:
                self.totals.add(usage)
        if answer.finish_reason == "length":
            log.info("a text answer was cut at the provider's length limit (%d characters)", len(answer.text))
        return answer.text, usage

    @llm_call(lambda client: client.settings.llm_model)  # a gen_ai span per request, when tracing is on
    def _complete(self, call: _Call, usage: Usage, *, temperature: float, background: bool) -> Completion:
        """One answer on the wire. Background calls wait for the token budget; answers to users are
        only charged. The budget is corrected, and the token count calibrated, by the reported usage
        (or, when the provider reports none, charged by the estimate)."""
        sent: dict[str, Any] = {"messages": call.messages, "reserved": 0}

        def on_send(messages: list[dict[str, str]]) -> None:
            sent["messages"], sent["reserved"] = messages, 0
            if self.budget is not None and background:
                reserve = self.settings.llm_completion_reserve
                answer_room = min(reserve, call.max_tokens) if call.max_tokens else reserve
                sent["reserved"] = self.budget.fit(self.count_tokens(messages) + answer_room)
                self.budget.reserve(sent["reserved"])
            usage.calls += 1

        # A stream without usage teaches the count nothing: whole answers carry it, until calibrated.
        whole = self._endpoint.quirks.usage_in_stream is False and not self.counter.calibrated
        try:
            answer = self._endpoint.complete(
                call.messages, schema=call.schema, name=call.name, max_tokens=call.max_tokens,
                temperature=temperature, whole=whole, on_send=on_send,
            )  # fmt: skip
        except openai.APIError as exc:
            overflow = context_overflow(exc)
            if overflow is None:
                raise
            if overflow.prompt_tokens:
                self.counter.learn(sent["messages"], overflow.prompt_tokens)
            raise LLMContextOverflow(
                f"the prompt does not fit the model's context window ({_short(overflow.message)}); prompts are "
                "sized to MEMORYOS_LLM_CONTEXT_TOKENS, which should be the model's real window",
                limit=overflow.limit, requested=overflow.requested,
            ) from exc  # fmt: skip
        if answer.reported and answer.prompt_tokens:
            self.counter.learn(answer.messages, answer.prompt_tokens)
            prompt_tokens, completion_tokens = answer.prompt_tokens, answer.completion_tokens or 0
        else:
            prompt_tokens, completion_tokens = self.count_tokens(answer.messages), self.count_tokens(answer.text)
        usage.prompt_tokens += prompt_tokens
        usage.completion_tokens += completion_tokens
        self._settle(prompt_tokens + completion_tokens - sent["reserved"])
        return answer

    def _settle(self, correction: int) -> None:
        """Corrects a reservation by what the call cost. A failed call keeps its reservation: the
        provider may have counted it, and a burst of errors should slow the workers down anyway."""
        if self.budget is None:
            return
        try:
            self.budget.charge(correction)
        except Exception as exc:  # noqa: BLE001 - the answer is in hand; the budget catches up next call
            log.warning("could not correct the LLM token budget: %s", exc)

    @staticmethod
    def _describe(exc: BaseException) -> str:
        return f"{type(exc).__name__}: {_short(exc)}"

    @staticmethod
    def _failed(error: LLMError, usage: Usage) -> LLMError:
        error.usage = usage
        return error

    def _require_configured(self) -> None:
        if not self.configured:
            raise LLMNotConfigured("no LLM configured (set MEMORYOS_OPENAI_API_KEY or MEMORYOS_OPENAI_BASE_URL)")


@dataclass(frozen=True)
class _Call:
    """What one logical call asks, whatever its attempts and adaptations."""

    messages: list[dict[str, str]]
    schema: dict[str, Any] | None
    name: str
    max_tokens: int | None


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""The LLM adapter: structured outputs through any OpenAI-compatible endpoint.

The openai client runs with max_retries=0: the retries here are the only ones, so a call's cost
and latency are bounded by settings (attempts x timeout). Malformed output counts as a failed
attempt like a 500. A provider that refuses json_schema is asked again with json_object and the
schema in the prompt, and remembered as such.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, TypeVar

import openai
from pydantic import BaseModel, ValidationError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from memoryos_workers.llm.base import (
    Budget,
    LLMError,
    LLMNotConfigured,
    LLMRateLimited,
    MalformedOutput,
    RateLimited,
    Structured,
    Usage,
)
from memoryos_workers.llm.token_budget import estimate_tokens
from schemas.settings import Settings

log = logging.getLogger("memoryos.llm")
M = TypeVar("M", bound=BaseModel)

TRANSIENT = (
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.RateLimitError,
    openai.InternalServerError,
)


def response_schema(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAI's strict form of the model's JSON schema (every field required, no extra keys)."""
    try:
        from openai.lib._pydantic import to_strict_json_schema

        return to_strict_json_schema(model)
    except Exception:  # noqa: BLE001 - private helper moved: the plain schema works non-strict
        return model.model_json_schema()


class LLMClient:
    """The :class:`~memoryos_workers.llm.base.LLM` over an OpenAI-compatible endpoint."""

    def __init__(self, settings: Settings, budget: Budget | None = None) -> None:
        self.settings = settings
        self.budget = budget  # background calls wait for it; answers to users are only charged
        self.configured = bool(settings.openai_api_key or settings.openai_base_url)
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-needed"
        self._client = openai.OpenAI(
            api_key=key, base_url=settings.openai_base_url, max_retries=0, timeout=settings.llm_timeout
        )
        self._json_schema_ok = True
        self._lock = threading.Lock()
        self.totals = Usage()

    def structured(
        self, messages: list[dict[str, str]], model: type[M], *, check: Any = None, name: str | None = None
    ) -> Structured[M]:
        """Call until the answer validates against `model` (and passes `check`, which raises
        MalformedOutput to ask again); raises LLMError after settings.llm_max_attempts."""
        if not self.configured:
            raise LLMNotConfigured("no LLM configured (set MEMORYOS_OPENAI_API_KEY or MEMORYOS_OPENAI_BASE_URL)")
        usage = Usage()
        retrying = Retrying(
            stop=stop_after_attempt(self.settings.llm_max_attempts),
            wait=wait_random_exponential(multiplier=self.settings.llm_backoff_base, max=self.settings.llm_backoff_max),
            retry=retry_if_exception_type((*TRANSIENT, MalformedOutput)),
            reraise=True,
        )
        try:
            value = retrying(self._attempt, messages, model, check, name or model.__name__, usage)
        except RateLimited as exc:
            error = LLMRateLimited(str(exc))
            error.usage = usage
            raise error from exc
        except (*TRANSIENT, MalformedOutput, openai.APIStatusError) as exc:
            error = LLMError(f"{type(exc).__name__}: {_short(exc)}")
            error.usage = usage
            raise error from exc
        finally:
            with self._lock:
                self.totals.add(usage)
        return Structured(value, usage)

    def _attempt(self, messages: list[dict[str, str]], model: type[M], check: Any, name: str, usage: Usage) -> M:
        schema = response_schema(model)
        try:
            response = self._create(messages, name, schema, usage)
        except openai.BadRequestError as exc:
            if not (self._json_schema_ok and "response_format" in str(exc)):
                raise
            log.warning("the endpoint refuses json_schema; using json_object with the schema in the prompt")
            self._json_schema_ok = False
            response = self._create(messages, name, schema, usage)
        content = response.choices[0].message.content or ""
        try:
            value = model.model_validate_json(content)
        except ValidationError as exc:
            raise MalformedOutput(f"answer does not match {name}: {_short(exc)}") from exc
        if check is not None:
            check(value)
        return value

    def _create(self, messages: list[dict[str, str]], name: str, schema: dict[str, Any], usage: Usage) -> Any:
        if self._json_schema_ok:
            fmt: dict[str, Any] = {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": schema, "strict": True},
            }
        else:
            fmt = {"type": "json_object"}
            messages = [
                *messages[:-1],
                {
                    "role": "system",
                    "content": "Answer with one JSON object matching this JSON schema:\n" + json.dumps(schema),
                },
                messages[-1],
            ]
        reserved = 0
        if self.budget is not None:
            reserved = self.budget.fit(estimate_tokens(messages, self.settings.llm_completion_reserve))
            self.budget.reserve(reserved)
        usage.calls += 1
        response = None
        try:
            response = self._client.chat.completions.create(
                model=self.settings.llm_model,
                messages=messages,
                response_format=fmt,
                temperature=0,  # type: ignore[arg-type]
            )
        finally:
            self._settle(reserved, response)
        if response.usage is not None:
            usage.prompt_tokens += response.usage.prompt_tokens
            usage.completion_tokens += response.usage.completion_tokens
        return response

    def _settle(self, reserved: int, response: Any) -> None:
        """Corrects a reservation by what the provider reported. A failed call keeps its reservation:
        the provider may have counted it, and a burst of errors should slow the workers down anyway."""
        if self.budget is None or response is None or response.usage is None:
            return
        try:
            self.budget.charge(response.usage.total_tokens - reserved)
        except Exception as exc:  # noqa: BLE001 - the answer is in hand; the budget catches up next call
            log.warning("could not correct the LLM token budget: %s", exc)

    def text(self, messages: list[dict[str, str]], *, temperature: float = 0.7) -> tuple[str, Usage]:
        """Plain text generation (responses to the user); same retry policy, no schema."""
        if not self.configured:
            raise LLMNotConfigured("no LLM configured (set MEMORYOS_OPENAI_API_KEY or MEMORYOS_OPENAI_BASE_URL)")
        usage = Usage()

        def once() -> str:
            usage.calls += 1
            response = self._client.chat.completions.create(
                model=self.settings.llm_model,
                messages=messages,
                temperature=temperature,  # type: ignore[arg-type]
            )
            if response.usage is not None:
                usage.prompt_tokens += response.usage.prompt_tokens
                usage.completion_tokens += response.usage.completion_tokens
                self._settle(0, response)  # a user is waiting for this answer: charged, never held
            return response.choices[0].message.content or ""

        retrying = Retrying(
            stop=stop_after_attempt(self.settings.llm_max_attempts),
            wait=wait_random_exponential(multiplier=self.settings.llm_backoff_base, max=self.settings.llm_backoff_max),
            retry=retry_if_exception_type(TRANSIENT),
            reraise=True,
        )
        try:
            return retrying(once), usage
        except (*TRANSIENT, openai.APIStatusError) as exc:
            raise LLMError(f"{type(exc).__name__}: {_short(exc)}") from exc
        finally:
            with self._lock:
                self.totals.add(usage)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""One chat completion over the wire: streamed, timed out on silence, adapted to what the endpoint takes.

Why stream: a model on a CPU may need minutes for an answer yet send a token every fraction of a
second; a timeout on the whole call either cuts it or lets a stalled server hang a worker for as long.
Streamed, the httpx read timeout is the longest silence (the wait for the first token, which includes
reading the prompt, and between tokens), and a separate generous cap bounds the whole call.

What endpoints differ in, learned on the first refusal and remembered by the :class:`Endpoint`:
``response_format`` json_schema (else json_object with the schema in the prompt, by the caller), and within
it the string lengths (``maxLength``/``minLength``: OpenAI's strict mode accepts only a subset of JSON schema;
refused, they are left out and the schema is still enforced; the post-check caps lengths anyway),
``stream_options`` (llama.cpp and older servers send no usage, or refuse the option), streaming itself
(then one plain request whose timeout is the cap: its silence lasts the whole answer; a server that
ignores ``stream`` and answers JSON is read as such), and ``max_tokens`` (newer OpenAI models want
``max_completion_tokens``). An adaptation re-sends at once; it is not a retry of a failed attempt.
Two more things are learned by watching: whether the stream reports usage (the caller may then ask a
few whole answers to calibrate its token count), and a stream that breaks before its first word
(llama-cpp-python raises a refusal such as a context overflow inside the stream, after status 200):
that request is asked once more whole, where the refusal comes as a status and can be read.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from memoryos_workers.llm.provider_errors import context_overflow

log = logging.getLogger("memoryos.llm")

_LENGTH_KEYWORDS = ("maxLength", "minLength")


def without_keys(schema: Any, keys: tuple[str, ...]) -> Any:
    """The schema with these keywords removed wherever they are (a new object; the input is not changed)."""
    if isinstance(schema, dict):
        return {k: without_keys(v, keys) for k, v in schema.items() if k not in keys}
    if isinstance(schema, list):
        return [without_keys(v, keys) for v in schema]
    return schema


class LLMTimeout(openai.APITimeoutError):
    """A timeout that says which one ran out (the openai client's says "Request timed out.")."""

    def __init__(self, request: Any, message: str) -> None:
        openai.APIConnectionError.__init__(self, message=message, request=request)


def silence_timeout(request: Any, seconds: float) -> LLMTimeout:
    return LLMTimeout(request, f"no token came for {seconds:g} s (MEMORYOS_LLM_TIMEOUT, the longest silence "
                               "allowed); the model stalled or is slower to start than that")


def call_timeout(request: Any, seconds: float, *, streamed: bool) -> LLMTimeout:
    why = "although tokens kept coming" if streamed else "(the endpoint does not stream: its answer comes whole)"
    return LLMTimeout(request, f"the answer took longer than {seconds:g} s (MEMORYOS_LLM_CALL_TIMEOUT) {why}; "
                               "raise it for a slow model")


@dataclass
class Completion:
    """An answer as received: its text, why it ended, and the usage the provider reported (None: none)."""

    text: str
    finish_reason: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    messages: list[dict[str, str]] = field(default_factory=list)  # as sent (the schema prompt included)

    @property
    def reported(self) -> bool:
        return self.prompt_tokens is not None


@dataclass
class Quirks:
    """What this endpoint accepts; each flag flips at most once, on the endpoint's first refusal."""

    json_schema: bool = True
    schema_lengths: bool = True  # maxLength / minLength in the json_schema
    stream: bool = True
    stream_usage: bool = True
    max_tokens_param: str = "max_tokens"
    usage_in_stream: bool | None = None  # seen in the last stream that ended normally; None: not yet known


class Endpoint:
    """Sends chat completions to one OpenAI-compatible endpoint with the openai client."""

    def __init__(self, client: openai.OpenAI, model: str, *, silence: float, call_cap: float, stream: bool) -> None:
        self._client = client
        self._model = model
        self._silence = silence
        self._cap = call_cap
        self.quirks = Quirks(stream=stream)
        self._lock = threading.Lock()

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        schema: dict[str, Any] | None = None,
        name: str = "answer",
        max_tokens: int | None = None,
        temperature: float = 0.0,
        whole: bool = False,
        on_send: Callable[[list[dict[str, str]]], None] | None = None,
    ) -> Completion:
        """One answer (JSON for `schema` when given), streamed unless `whole` or the endpoint cannot.
        ``on_send(messages)`` runs before each request on the wire with the messages it sends (budget,
        counters). Raises the openai client's errors; a refusal this endpoint can be adapted to is
        adapted to first."""
        for _ in range(8):  # five quirks flip once each, a broken stream is asked whole once
            sent = messages
            params: dict[str, Any] = {"model": self._model, "temperature": temperature}
            if schema is not None:
                sent, params["response_format"] = self._structured(messages, schema, name)
            params["messages"] = sent
            if max_tokens is not None:
                params[self.quirks.max_tokens_param] = max_tokens
            if on_send is not None:
                on_send(sent)
            try:
                if self.quirks.stream and not whole:
                    answer = self._streamed(params)
                    if answer.finish_reason is None and not answer.text:
                        log.warning("the LLM stream ended before its first word; asking once without streaming")
                        whole = True
                        continue
                else:
                    answer = self._whole(params)
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                if context_overflow(exc) is not None or not self._adapt(exc, params):
                    raise
                continue
            answer.messages = sent
            return answer
        raise RuntimeError("the endpoint kept refusing requests after every adaptation")  # pragma: no cover

    def _structured(
        self, messages: list[dict[str, str]], schema: dict[str, Any], name: str
    ) -> tuple[list[dict[str, str]], dict[str, Any]]:
        if self.quirks.json_schema:
            if not self.quirks.schema_lengths:
                schema = without_keys(schema, _LENGTH_KEYWORDS)
            return messages, {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
        instruction = {
            "role": "system",
            "content": "Answer with one JSON object matching this JSON schema:\n" + json.dumps(schema),
        }
        return [*messages[:-1], instruction, messages[-1]], {"type": "json_object"}

    def _adapt(self, exc: openai.APIStatusError, params: dict[str, Any]) -> bool:
        """Flips the quirk the refusal names; False when it names none we can do without."""
        text = str(exc).lower()
        with self._lock:
            quirks = self.quirks
            if (quirks.json_schema and quirks.schema_lengths and "response_format" in params
                    and "response_format" in text and any(k.lower() in text for k in _LENGTH_KEYWORDS)):
                quirks.schema_lengths = False
                log.warning("the LLM endpoint's json_schema refuses string lengths (maxLength); sending schemas "
                            "without them (answers are still held to the schema; lengths are capped when read)")
            elif quirks.json_schema and "response_format" in text and "response_format" in params:
                quirks.json_schema = False
                log.warning("the LLM endpoint refuses json_schema; using json_object with the schema in the prompt")
            elif quirks.stream and quirks.stream_usage and "stream_options" in text:
                quirks.stream_usage = False
                log.warning("the LLM endpoint refuses stream_options; token usage will be estimated")
            elif quirks.stream and re.search(r"\bstream\b", text):  # not "upstream"
                quirks.stream = False
                log.warning("the LLM endpoint refuses streaming; waiting up to %g s for each whole answer", self._cap)
            elif quirks.max_tokens_param == "max_tokens" and "max_tokens" in text and "max_tokens" in params:
                quirks.max_tokens_param = "max_completion_tokens"
                log.warning("the LLM endpoint wants max_completion_tokens instead of max_tokens")
            else:
                return False
        return True

    def _streamed(self, params: dict[str, Any]) -> Completion:
        try:
            return self._read_stream(params)
        except LLMTimeout:
            raise
        except openai.APITimeoutError as exc:  # httpx's read timeout: the longest silence ran out
            raise silence_timeout(exc.request, self._silence) from exc

    def _read_stream(self, params: dict[str, Any]) -> Completion:
        deadline = time.monotonic() + self._cap
        extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if self.quirks.stream_usage else {}
        stream = self._client.chat.completions.create(**params, stream=True, **extra)
        with stream:
            if "json" in stream.response.headers.get("content-type", ""):  # the server ignored stream=True
                return _from_whole(ChatCompletion.model_validate_json(stream.response.read()))
            parts: list[str] = []
            finish: str | None = None
            prompt_tokens = completion_tokens = None
            for chunk in stream:
                if chunk.usage is not None:
                    prompt_tokens, completion_tokens = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
                for choice in chunk.choices:
                    if choice.delta is not None and choice.delta.content:
                        parts.append(choice.delta.content)
                    if choice.finish_reason:
                        finish = choice.finish_reason
                if time.monotonic() > deadline:
                    raise call_timeout(stream.response.request, self._cap, streamed=True)
        if finish is not None:
            self.quirks.usage_in_stream = prompt_tokens is not None
        return Completion("".join(parts), finish, prompt_tokens, completion_tokens)

    def _whole(self, params: dict[str, Any]) -> Completion:
        timeout = openai.Timeout(self._cap, connect=min(self._silence, 10.0))
        try:
            return _from_whole(self._client.chat.completions.create(**params, timeout=timeout))
        except openai.APITimeoutError as exc:
            raise call_timeout(exc.request, self._cap, streamed=False) from exc


def _from_whole(response: ChatCompletion) -> Completion:
    choice = response.choices[0] if response.choices else None
    text = (choice.message.content or "") if choice is not None else ""
    finish = choice.finish_reason if choice is not None else None
    usage = response.usage
    if usage is None:
        return Completion(text, finish)
    return Completion(text, finish, usage.prompt_tokens, usage.completion_tokens)

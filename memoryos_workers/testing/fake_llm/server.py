"""The fake LLM itself: knobs, counters, scripting and the lifecycle of its HTTP server.

See the package docstring (:mod:`memoryos_workers.testing.fake_llm`) for how tests use it.
"""

from __future__ import annotations

import collections
import itertools
import random
import threading
from collections.abc import Iterable
from typing import Any

from memoryos_workers.testing.fake_llm.answers import Answering, Responder
from memoryos_workers.testing.fake_llm.completions import DEFAULT_TEXT_ANSWER
from memoryos_workers.testing.fake_llm.httpd import Server


class FakeLLM(Answering):
    """Fake OpenAI chat-completions endpoint on 127.0.0.1 with scriptable answers and faults.

    Knobs (plain attributes, read on every request, so they may be changed mid-test):
      ``responder``, ``latency``, ``error_rate``, ``error_status``, ``timeout_rate``, ``hang_seconds``,
      ``malformed_rate``, ``retry_after``, ``reject_json_schema``, ``reject_schema_keywords``, ``require_auth``,
      ``model``, ``text_answer``, and ``seed`` (a property: setting it re-seeds the fault RNG).

    Knobs of a real model's limits (None = off):
      ``context_tokens`` -- an OpenAI-style 400 ``context_length_exceeded`` when the prompt is longer
      (by the fake's count, ceil(characters / 4) of the messages' text);
      ``stream_tokens_per_s`` -- the model's speed: a request with ``stream: true`` is answered as
      server-sent events at that rate, one 4-character token per chunk, and a whole answer comes once
      all of it is generated (unset: at once, a streamed one in a few chunks); the usage comes in a last
      chunk when the request asks ``stream_options.include_usage``, unless ``stream_usage`` is False
      (llama.cpp sends none); ``stall_after_tokens`` -- a stream goes silent after that many tokens
      (until the client hangs up or ``hang_seconds`` pass); ``truncate_at_tokens`` -- the answer is cut
      there with finish_reason "length"; ``generic`` -- every json_schema is answered with arbitrary
      schema-valid JSON (array lengths and values drawn within the schema's bounds, seeded), ignoring
      the responder, as a server enforcing the schema with its own model would.
      Endpoint quirks: ``reject_stream`` (400 for stream=true), ``reject_stream_options`` (400 for
      stream_options), ``ignore_stream`` (a plain JSON answer even to stream=true),
      ``context_refusal_in_stream`` (a streamed prompt over the window gets 200 and an empty stream,
      as from llama-cpp-python's server).

    Counters (thread-safe, updated under a lock): ``calls``, ``successes``, ``failures``,
    ``prompt_tokens``, ``completion_tokens``, ``unauthorized``, ``faults`` (Counter by kind),
    ``statuses`` (Counter by HTTP status) and ``requests`` (copy of the parsed request bodies,
    ``len(requests) == calls``).

    How one request is answered (auth, validation, script, fault draw, responder, default) is
    :class:`~memoryos_workers.testing.fake_llm.answers.Answering`'s; this class owns the knobs,
    the counters and the server's lifecycle.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        model: str = "fake-model",
        latency: float = 0.0,
        error_rate: float = 0.0,
        error_status: int = 500,
        timeout_rate: float = 0.0,
        hang_seconds: float = 60.0,
        malformed_rate: float = 0.0,
        retry_after: float = 1.0,
        seed: int | None = 0,
        reject_json_schema: bool = False,
        reject_schema_keywords: tuple[str, ...] = (),
        require_auth: bool = True,
        responder: Responder | None = None,
        text_answer: str = DEFAULT_TEXT_ANSWER,
        context_tokens: int | None = None,
        stream_tokens_per_s: float | None = None,
        stream_usage: bool = True,
        stall_after_tokens: int | None = None,
        truncate_at_tokens: int | None = None,
        generic: bool = False,
        reject_stream: bool = False,
        reject_stream_options: bool = False,
        ignore_stream: bool = False,
        context_refusal_in_stream: bool = False,
    ) -> None:
        self.port = port
        self.model = model
        self.latency = latency
        self.error_rate = error_rate
        self.error_status = error_status
        self.timeout_rate = timeout_rate
        self.hang_seconds = hang_seconds
        self.malformed_rate = malformed_rate
        self.retry_after = retry_after
        self.reject_json_schema = reject_json_schema
        self.reject_schema_keywords = tuple(reject_schema_keywords)
        self.require_auth = require_auth
        self.responder: Responder | None = responder
        self.text_answer = text_answer
        self.context_tokens = context_tokens
        self.stream_tokens_per_s = stream_tokens_per_s
        self.stream_usage = stream_usage
        self.stall_after_tokens = stall_after_tokens
        self.truncate_at_tokens = truncate_at_tokens
        self.generic = generic
        self.reject_stream = reject_stream
        self.reject_stream_options = reject_stream_options
        self.ignore_stream = ignore_stream
        self.context_refusal_in_stream = context_refusal_in_stream

        self._lock = threading.Lock()
        self._seed = seed
        self._rng = random.Random(seed)
        self._answer_rng = random.Random(seed)  # generic answers: apart, so fault draws do not shift
        self._queue: collections.deque[Any] = collections.deque()
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._reset_counters()

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> FakeLLM:
        """Bind 127.0.0.1 (port 0 = a free port chosen by the OS) and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = Server(("127.0.0.1", self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeLLM:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; wakes hanging requests and closes open connections so tests end fast."""
        server = self._server
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1`` -- what to give ``openai.OpenAI(base_url=...)``."""
        if self._server is None:
            raise RuntimeError("FakeLLM is not running; use `with FakeLLM() as llm:` or .start()")
        return f"http://127.0.0.1:{self.port}/v1"

    def client(
        self, *, timeout: float = 5.0, max_retries: int = 0, api_key: str = "test", **kwargs: Any
    ) -> Any:
        """A real ``openai.OpenAI`` client pointed at this server (no retries unless asked)."""
        import openai  # imported lazily: the server itself needs only the stdlib

        return openai.OpenAI(
            base_url=self.base_url, api_key=api_key, max_retries=max_retries, timeout=timeout, **kwargs
        )

    # -- scripting ---------------------------------------------------------------------------------

    @property
    def seed(self) -> int | None:
        """Seed of the fault RNG; assigning re-seeds, so the same seed replays the same faults."""
        return self._seed

    @seed.setter
    def seed(self, value: int | None) -> None:
        with self._lock:
            self._seed = value
            self._rng = random.Random(value)
            self._answer_rng = random.Random(value)

    def queue_responses(self, items: Iterable[Any]) -> None:
        """Script the next answers in order: dict/list (serialized), str (verbatim), None
        (default answer) or :class:`Fault`. Queued items win over the fault rates and the responder."""
        with self._lock:
            self._queue.extend(items)

    @property
    def pending(self) -> int:
        """Number of queued answers not consumed yet (assert 0 to check a script ran fully)."""
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        """Zero the counters, forget recorded requests, clear the queue and re-seed the RNG.

        Knobs (rates, responder, ...) are kept: they are configuration, not state.
        """
        with self._lock:
            self._queue.clear()
            self._rng = random.Random(self._seed)
            self._answer_rng = random.Random(self._seed)
            self._reset_counters()

    def _reset_counters(self) -> None:
        self.calls = 0
        self.successes = 0
        self.failures = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.unauthorized = 0
        self.faults: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[int] = collections.Counter()
        self._requests: list[dict[str, Any]] = []

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Parsed bodies of all chat-completions requests, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> dict[str, Any]:
        """The most recent parsed request body."""
        with self._lock:
            if not self._requests:
                raise LookupError("no chat-completions request received yet")
            return self._requests[-1]

    def stats(self) -> dict[str, Any]:
        """Counters as a JSON-able dict (also served at GET /_fake/stats for standalone runs)."""
        with self._lock:
            return {
                "calls": self.calls,
                "successes": self.successes,
                "failures": self.failures,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "unauthorized": self.unauthorized,
                "faults": dict(self.faults),
                "statuses": {str(k): v for k, v in self.statuses.items()},
            }

"""A fake OpenAI-compatible chat-completions server for tests and local benchmarks.

Why a real HTTP server instead of mocking the ``openai`` client: the workers talk to the LLM through
the real ``openai`` client, and what we need to test is exactly what the client does on the wire --
which ``response_format`` it sends, how it reacts to 400/429/500 status codes, timeouts, truncated
JSON, the ``json_schema`` -> ``json_object`` fallback. Mocks would test our assumptions about the
client; a server on 127.0.0.1 tests the client itself.

Usage::

    with FakeLLM() as llm:
        client = openai.OpenAI(base_url=llm.base_url, api_key="test", max_retries=0)
        llm.responder = lambda request: {"topics": ["weather"]}
        llm.queue_responses([Fault.http(429), {"topics": []}])
        ...
        assert llm.calls == 2

Standalone (manual use, benchmarks)::

    python -m memoryos_workers.testing.fake_llm --port 0 --latency 0.5      # prints the base URL on stdout

Only the standard library is used so the fake can run anywhere the tests run. Where each part lives:
:mod:`.server` (FakeLLM: knobs, counters, scripting, lifecycle), :mod:`.answers` (how one request is
answered), :mod:`.faults` (Fault and error bodies), :mod:`.completions` (answer shapes on the wire,
whole or as stream chunks), :mod:`.schema_answers` (the default structured answer),
:mod:`.schema_random` (the ``generic`` mode's arbitrary schema-valid answer), :mod:`.httpd` (the
stdlib HTTP server, and the pacing of streamed answers) and ``__main__`` (the standalone command).
"""

from memoryos_workers.testing.fake_llm.answers import Responder
from memoryos_workers.testing.fake_llm.completions import DEFAULT_TEXT_ANSWER, estimate_tokens
from memoryos_workers.testing.fake_llm.faults import Fault
from memoryos_workers.testing.fake_llm.schema_answers import generate_from_schema
from memoryos_workers.testing.fake_llm.schema_random import random_from_schema
from memoryos_workers.testing.fake_llm.server import FakeLLM

__all__ = [
    "DEFAULT_TEXT_ANSWER", "FakeLLM", "Fault", "Responder", "estimate_tokens", "generate_from_schema",
    "random_from_schema",
]  # fmt: skip

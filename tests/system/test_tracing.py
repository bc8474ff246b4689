"""Traces across processes (issue 23): a publish, the promote task it causes, the promotion with its LLM
calls and store writes are one trace; an HTTP retrieval is one trace from the request, through the retrieval
lane, to the worker that builds the prompt's context. Spans carry ids, never turn text or keys.

The chat backend's side (this process) records into an in-memory exporter; the worker process and the
`memoryos serve` process export over OTLP/HTTP (their standard OTEL_* environment) to a receiver of the
test's own. Memory on the shared test Redis under a prefix of the test's own, the real store and embeddings,
the fake LLM.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from producers import tracing
from producers.pending import PendingWork
from producers.publish import Publisher
from schemas.settings import Settings
from tests.conftest import FAKE_LLM, PREFIX
from tests.otlp import OTLPReceiver, ReceivedSpan
from tests.processes import ROOT, ApiServer, WorkerProcess

pytestmark = pytest.mark.integration

API_KEY = "trace-test-key-" + uuid.uuid4().hex
MARKER = "beekeeping-secret-" + uuid.uuid4().hex[:8]  # in every turn's text: must appear in no span


@pytest.fixture(scope="module")
def receiver() -> Iterator[OTLPReceiver]:
    server = OTLPReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """The chat backend's own provider, for memoryos's spans in this process only (no global provider)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "chat-backend"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.use_provider(provider)
    yield memory
    tracing.use_provider(None)
    provider.shutdown()


@pytest.fixture(scope="module")
def deployment(receiver: OTLPReceiver, tmp_path_factory: pytest.TempPathFactory, redis_client: redis.Redis,
               ) -> Iterator[tuple[Settings, dict[str, str], Path]]:
    folder = tmp_path_factory.mktemp("tracing")
    prefix = f"{PREFIX}-trace-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
        "MEMORYOS_KEY_PREFIX": prefix, "MEMORYOS_DATA_DIR": str(folder / "data"),
        "MEMORYOS_OPENAI_BASE_URL": FAKE_LLM.base_url, "MEMORYOS_API_KEYS": f"{API_KEY}=*",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    env.pop("MEMORYOS_QDRANT_URL", None)
    settings = Settings(key_prefix=prefix, data_dir=folder / "data")
    worker = WorkerProcess("tracing", {**env, "OTEL_SERVICE_NAME": "memoryos-worker"}, folder, concurrency=4)
    worker.start()
    try:
        yield settings, env, folder
    finally:
        worker.stop()
        for key in redis_client.scan_iter(match=f"{prefix}*", count=1000):
            redis_client.delete(key)


def _wait_spans(receiver: OTLPReceiver, trace_id: str, names: set[str], timeout: float = 60) -> list[ReceivedSpan]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        spans = [s for s in receiver.snapshot() if s.trace_id == trace_id]
        if names <= {s.name for s in spans}:
            return spans
        time.sleep(0.2)
    got = sorted({s.name for s in receiver.snapshot() if s.trace_id == trace_id})
    raise AssertionError(f"trace {trace_id} lacks {names - set(got)}; it has {got}")


def _no_secrets(values: list[Any]) -> None:
    text = repr(values)
    assert MARKER not in text, "turn text in a span"
    assert API_KEY not in text, "an API key in a span"


def _ancestors(span: ReceivedSpan, by_id: dict[str, Any]) -> list[str]:
    names, parent = [], span.parent_id
    while parent and parent in by_id:
        names.append(by_id[parent]["name"])
        parent = by_id[parent]["parent"]
    return names


def test_one_trace_from_publish_to_promotion(deployment: Any, receiver: OTLPReceiver,
                                             exporter: InMemorySpanExporter) -> None:
    settings, _, _ = deployment
    publisher = Publisher(settings)
    user = f"trace-user-{uuid.uuid4().hex[:6]}"
    for i in range(20):
        publisher.publish({"user_id": user, "turn_id": f"{user}-{i:02d}", "user_input": f"{MARKER} hive {i}",
                           "agent_response": "lovely"})
    PendingWork(publisher).wait_idle(user, timeout=120)

    publishes = [s for s in exporter.get_finished_spans() if s.name == "memoryos.publish"]
    assert len(publishes) == 20 and all(s.attributes["memoryos.user_id"] == user for s in publishes)
    assert publishes[0].kind == trace.SpanKind.PRODUCER
    # The 20th publish cut the first batch (10 in short-term, a batch of 10): its trace goes on in the worker.
    cutting = publishes[-1]
    trace_id = format(cutting.context.trace_id, "032x")
    spans = _wait_spans(receiver, trace_id, {"run/memoryos.promote", "memoryos.promote", "memoryos.promote_batch",
                                             "chat gpt-4o-mini", "upsert pages"})
    by_id = {s.span_id: {"name": s.name, "parent": s.parent_id} for s in spans}
    by_id[format(cutting.context.span_id, "016x")] = {"name": "memoryos.publish", "parent": ""}
    task = next(s for s in spans if s.name == "run/memoryos.promote")
    assert task.service == "memoryos-worker" and task.parent_id == format(cutting.context.span_id, "016x"), \
        "the task span's parent is the publish, through the task headers"
    batch = next(s for s in spans if s.name == "memoryos.promote_batch")
    assert _ancestors(batch, by_id)[:3] == ["memoryos.promote", "run/memoryos.promote", "memoryos.publish"]
    llm = next(s for s in spans
               if s.name == "chat gpt-4o-mini" and s.attributes["memoryos.llm.purpose"] == "segmentation")
    assert "memoryos.promote_batch" in _ancestors(llm, by_id)
    assert llm.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert llm.attributes["gen_ai.operation.name"] == "chat"
    assert llm.attributes["memoryos.llm.purpose"] == "segmentation"
    assert llm.attributes["gen_ai.usage.input_tokens"] > 0 and llm.attributes["gen_ai.usage.output_tokens"] > 0
    assert batch.attributes["memoryos.user_id"] == user and batch.attributes["memoryos.pages"] == 10
    upsert = next(s for s in spans if s.name == "upsert pages")
    assert upsert.attributes["memoryos.points"] == 10 and "memoryos.promote_batch" in _ancestors(upsert, by_id)
    redis_spans = [s for s in spans if s.attributes.get("db.system") == "redis"
                   or s.attributes.get("db.system.name") == "redis"]
    assert redis_spans, "the redis instrumentation's spans join the trace"
    statements = [s.attributes.get("db.statement") or s.attributes.get("db.query.text") or "" for s in redis_spans]
    assert not any("{u:" in st or user in st for st in statements), "a Redis key in a span"
    _no_secrets([s.attributes for s in receiver.snapshot()] + [dict(s.attributes) for s in publishes])


def test_an_http_retrieval_is_one_trace_to_the_worker(deployment: Any, receiver: OTLPReceiver,
                                                      exporter: InMemorySpanExporter) -> None:
    settings, env, folder = deployment
    publisher = Publisher(settings)
    user = f"trace-reader-{uuid.uuid4().hex[:6]}"
    publisher.publish_many([{"user_id": user, "user_input": f"{MARKER} I keep bees in Porto ({i})",
                             "agent_response": "ok"} for i in range(25)])
    PendingWork(publisher).wait_idle(user, timeout=120, flush=True)
    # The API exports only when it stops (a schedule longer than the test): its last spans must not be lost
    # when uvicorn ends the process by re-raising SIGTERM.
    api_env = {**env, "OTEL_SERVICE_NAME": "memoryos-api", "OTEL_BSP_SCHEDULE_DELAY": "600000"}
    server = ApiServer("tracing", api_env, folder).start()
    try:
        with tracing.span("chat request", trace.SpanKind.SERVER) as parent:
            headers = {"Authorization": f"Bearer {API_KEY}", **tracing.task_headers()}
            answer = httpx.post(f"{server.url}/v1/users/{user}/retrieve", json={"query": "Where are my bees?"},
                                headers=headers, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["prompt"]
    finally:
        server.stop()
    trace_id = format(parent.get_span_context().trace_id, "032x")
    spans = _wait_spans(receiver, trace_id, {"memoryos.retrieve.rpc", "memoryos.retrieve serve", "memoryos.retrieve"})
    services = {s.name: s.service for s in spans}
    assert services["memoryos.retrieve.rpc"] == "memoryos-api"
    assert services["memoryos.retrieve serve"] == services["memoryos.retrieve"] == "memoryos-worker"
    http = [s for s in spans if s.service == "memoryos-api" and s.kind == 2]  # SERVER: the FastAPI request
    assert http, "no HTTP request span from the API"
    retrieve = next(s for s in spans if s.name == "memoryos.retrieve")
    assert retrieve.attributes["memoryos.user_id"] == user and retrieve.attributes["memoryos.pages"] >= 1
    assert any(s.name.startswith("query ") for s in spans), "the store's searches join the trace"
    _no_secrets([s.attributes for s in receiver.snapshot()])

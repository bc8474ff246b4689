"""A retrieval option is one field of `schemas.query.RetrievalRequest`, and every app passes it on: the HTTP
body, the MCP tool, the `Memoryos` class, `producers.retrieve` and `in_process.retrieve`. Each app here
talks to a memory that records the request it receives; the request must carry every option as given.

Adding a field to RetrievalRequest fails `test_every_option_has_a_sample` until it has a sample below, and
then every other test checks that it reaches the retriever from every app, with no edit to the apps."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from memoryos_workers.interface.base import FactKind, Memory
from memoryos_workers.runtime import Runtime
from producers.context import RetrievedContext
from schemas.persona import KnowledgeEntry, UserProfile
from schemas.query import RetrievalRequest
from schemas.settings import Settings

SAMPLES: dict[str, Any] = {
    "assistant_id": "bot-1",
    "top_k": 4,
    "max_tokens": 500,
    "now": "2025-06-01T10:00:00+00:00",
    "filters": {"since": "2025-05-01", "metadata": {"channel": "web"}},
    "deadline_ms": 900.0,
    "on_deadline": "raise",
    "fact_history": True,
}


class RecordingMemory(Memory):
    """Answers every retrieval with an empty context and keeps the requests."""

    mode = "local"

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.requests: list[RetrievalRequest] = []

    def retrieve(self, request: RetrievalRequest) -> RetrievedContext:
        self.requests.append(request)
        return RetrievedContext(user_id=request.user_id, assistant_id=request.assistant_id, query=request.query)

    def profile(self, user_id: str) -> UserProfile | None:
        return None

    def facts(self, kind: FactKind, user_id: str | None, assistant_id: str | None = None) -> list[KnowledgeEntry]:
        return []

    def _command(self, op: str, user_id: str | None, params: dict[str, Any] | None = None) -> Any:
        return None

    def check_store(self) -> None:
        return None


@pytest.fixture
def recording(settings: Settings) -> Iterator[RecordingMemory]:
    yield RecordingMemory(Runtime(settings))


def _expected(**changes: Any) -> RetrievalRequest:
    return RetrievalRequest.of("u1", "Where did I hike?", **{**SAMPLES, **changes})


def test_every_option_has_a_sample() -> None:
    assert set(SAMPLES) == set(RetrievalRequest.options())


def test_python_entry_points_pass_every_option(recording: RecordingMemory) -> None:
    recording.retrieve_for("u1", "Where did I hike?", **SAMPLES)
    assert recording.requests == [_expected()]


def test_the_memoryos_class_passes_every_option(recording: RecordingMemory, monkeypatch) -> None:  # noqa: ANN001
    from memoryos_workers.apps import memoryos

    monkeypatch.setattr(memoryos, "shared_memory", lambda settings: recording)
    mos = memoryos.Memoryos(user_id="u1", assistant_id="bot-1")
    mos.retrieve("Where did I hike?", **{k: v for k, v in SAMPLES.items() if k != "assistant_id"})
    assert recording.requests == [_expected()]


def test_the_http_body_is_the_request_and_passes_every_option(recording: RecordingMemory, settings) -> None:  # noqa: ANN001
    from fastapi.testclient import TestClient

    from memoryos_workers.apps.http.app import create_app

    keyed = Settings.model_validate({**settings.model_dump(), "api_keys": "opt-key-0123456789=acme"})
    with TestClient(create_app(keyed, recording)) as client:
        documented = client.get("/openapi.json").json()
        res = client.post("/v1/users/u1/retrieve", headers={"Authorization": "Bearer opt-key-0123456789"},
                          json={"query": "Where did I hike?", **SAMPLES})
    assert res.status_code == 200, res.text
    body = documented["paths"]["/v1/users/{user_id}/retrieve"]["post"]["requestBody"]["content"]
    assert set(body["application/json"]["schema"]["properties"]) == {"query", *SAMPLES}
    # The tenant's namespace applies to ids (the user, the assistants), nothing else changes.
    want = _expected(assistant_id="acme:bot-1").model_copy(update={"user_id": "acme:u1"})
    assert recording.requests == [want]


def test_the_mcp_tool_offers_and_passes_every_option(recording: RecordingMemory) -> None:
    from memoryos_workers.apps.mcp.tools import build_server

    class Service:
        def start(self) -> None:
            pass

        def memory(self) -> Memory:
            return recording

    server = build_server(Service())  # type: ignore[arg-type]
    tools = {tool.name: tool for tool in asyncio.run(server.list_tools())}
    offered = set(tools["retrieve_memory"].input_schema["properties"])
    # MemoryOS-MCP calls top_k max_results; the assistant is the server's (or the key's tenant's).
    assert {*SAMPLES} - {"top_k", "assistant_id"} <= offered and "max_results" in offered
    options = {k: v for k, v in SAMPLES.items() if k not in ("top_k", "assistant_id")}
    asyncio.run(server.call_tool("retrieve_memory", {"query": "Where did I hike?", "max_results": 4, "user_id": "u1",
                                                     **options}))
    assert recording.requests == [_expected(assistant_id=recording.settings.assistant_id)]

"""`RemoteMemory`: the memory for a process that cannot open the vector store (another process holds the
embedded store: a running `memoryos worker`). Publishing is the same Redis script as anywhere; reads go
through the retrieval lane (producers.retrieve, producers.persona) and operators' commands to a worker
(producers.operations), which answers them with `LocalMemory`."""

from __future__ import annotations

import json
from typing import Any

from memoryos_workers.interface.base import ANALYSE, DEAD_LIST, FactKind, Memory
from memoryos_workers.runtime import Runtime
from producers.context import RetrievedContext
from producers.operations import call_admin
from producers.retrieve import client_for
from producers.wire.contract import READ_PERSONA_TASK
from schemas.persona import KnowledgeEntry, UserProfile
from schemas.query import RetrievalRequest
from schemas.turns import check_id

READY_TIMEOUT = 3.0  # seconds a readiness probe waits for a worker's answer
ANALYSE_TIMEOUT = 600.0  # a forced persona extraction makes LLM calls


class RemoteMemory(Memory):
    mode = "remote"

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self._client = client_for(self.publisher)

    def retrieve(self, request: RetrievalRequest) -> RetrievedContext:
        return self._client.retrieve(request)

    def profile(self, user_id: str) -> UserProfile | None:
        check_id("user_id", user_id)
        value = self._read("profile", user_id, None)
        return UserProfile.model_validate(value) if value else None

    def facts(self, kind: FactKind, user_id: str | None, assistant_id: str | None = None) -> list[KnowledgeEntry]:
        check_id("user_id", user_id, required=kind == "user")
        if kind == "assistant":
            assistant_id = check_id("assistant_id", assistant_id or self.settings.assistant_id)
        elif kind != "user":
            raise ValueError(f"kind: must be user or assistant, not {kind!r}")
        return [KnowledgeEntry.model_validate(v) for v in self._read(kind, user_id, assistant_id)]

    def _read(self, kind: str, user_id: str | None, assistant_id: str | None) -> Any:
        return json.loads(self._client.call(READ_PERSONA_TASK, [kind, user_id, assistant_id], {}))

    def _command(self, op: str, user_id: str | None, params: dict[str, Any] | None = None) -> Any:
        check_id("user_id", user_id, required=False)
        if op == ANALYSE:
            return call_admin(op, user_id, timeout=ANALYSE_TIMEOUT, publisher=self.publisher)
        return call_admin(op, user_id, publisher=self.publisher, params=params)

    def check_store(self) -> None:
        call_admin(DEAD_LIST, "readyz-probe", timeout=READY_TIMEOUT, publisher=self.publisher)

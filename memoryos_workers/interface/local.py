"""`LocalMemory`: the memory in the process that owns the vector store (a worker, the embedded setup, an
API process beside a Qdrant server), read through the runtime: the same retriever, persona store and
operators' commands (memoryos_workers/ops/commands.py) that answer a `RemoteMemory` over RPC."""

from __future__ import annotations

import json
import logging
from typing import Any

from memoryos_workers.interface.base import FactKind, Memory
from memoryos_workers.runtime import Runtime, set_runtime
from producers.context import RetrievedContext
from schemas.persona import KnowledgeEntry, UserProfile
from schemas.query import RetrievalRequest
from schemas.turns import check_id

log = logging.getLogger("memoryos.memory")


class LocalMemory(Memory):
    mode = "local"

    def __init__(self, runtime: Runtime, *, worker: Any = None) -> None:
        """`worker`: an in-process worker (memoryos_workers.worker.embedded.EmbeddedWorker) this memory
        owns and stops on close; its tasks read the process's runtime, so this one is installed."""
        super().__init__(runtime)
        self._worker = worker
        self._previous = set_runtime(runtime) if worker is not None else None

    @property
    def runs_worker(self) -> bool:
        return self._worker is not None

    def retrieve(self, request: RetrievalRequest) -> RetrievedContext:
        return self.runtime.retriever.retrieve(request)

    def profile(self, user_id: str) -> UserProfile | None:
        check_id("user_id", user_id)
        return self.runtime.persona.get_profile(user_id)

    def facts(self, kind: FactKind, user_id: str | None, assistant_id: str | None = None) -> list[KnowledgeEntry]:
        check_id("user_id", user_id, required=kind == "user")
        assistant = check_id("assistant_id", assistant_id or self.settings.assistant_id)
        return self.runtime.persona.facts(kind, user_id, str(assistant))

    def _command(self, op: str, user_id: str | None) -> Any:
        from memoryos_workers.ops.commands import run

        # Plain JSON values, as a remote caller receives them (datetimes as ISO strings).
        return json.loads(json.dumps(run(self.runtime, op, user_id), ensure_ascii=False, default=str))

    def check_store(self) -> None:
        self.runtime.pages.count("readyz-probe")

    def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop(timeout=10)
            set_runtime(self._previous)
        self.runtime.close()


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

    def __init__(self, runtime: Runtime, *, owns_runtime: bool = False, run_worker: bool = False) -> None:
        """`owns_runtime`: this memory is the process's (open_memory made it): its runtime is installed as the
        process runtime, which a worker's tasks read, and closed with it; a LocalMemory over a runtime someone
        else owns (in_process, the retrieval lane) leaves it alone. `run_worker`: start an in-process Celery
        worker (memoryos_workers.worker.embedded), stopped on close; only for a memory that owns its runtime."""
        if run_worker and not owns_runtime:
            raise ValueError("run_worker: an in-process worker needs a memory that owns its runtime")
        super().__init__(runtime)
        self._owns = owns_runtime
        self._previous = set_runtime(runtime) if owns_runtime else None
        self._worker: Any = None
        if run_worker:
            from memoryos_workers.worker.embedded import EmbeddedWorker

            try:
                self._worker = EmbeddedWorker(runtime).start()  # after set_runtime: its tasks read this runtime
            except BaseException:
                set_runtime(self._previous)
                raise

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

    def _command(self, op: str, user_id: str | None, params: dict[str, Any] | None = None) -> Any:
        from memoryos_workers.ops.commands import run

        # Plain JSON values, as a remote caller receives them (datetimes as ISO strings).
        return json.loads(json.dumps(run(self.runtime, op, user_id, params), ensure_ascii=False, default=str))

    def check_store(self) -> None:
        self.runtime.pages.count("readyz-probe")

    def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop(timeout=10)
        if self._owns:
            self._owns = False
            set_runtime(self._previous)
            self.runtime.close()


"""The memory behind the API: publishing through producers, and reads either in this process or over RPC.

Which one is decided once, at start-up, as every other app of the project decides it:

- `MEMORYOS_QDRANT_URL` set: this process opens the Qdrant server itself (any number of API processes
  can) and retrieves in-process; the deployment's workers do the background work.
- embedded store, free: this process owns it and runs its own in-process Celery worker, standalone
  like `memoryos mcp` (retrieval in-process, the worker builds the memory).
- embedded store held by another process (a running `memoryos worker`): reads go to that worker over
  RPC (`producers.retrieve`, `producers.operations`), as the CLI does.

Everything here is blocking (Redis, the model, the store): routes call it from a thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

from memoryos_workers.runtime import Runtime, get_runtime
from producers.publish import Publisher
from schemas.context import RetrievedContext
from schemas.settings import Settings
from schemas.turns import Turn

log = logging.getLogger("memoryos.http")
Mode = Literal["local", "rpc"]
T = TypeVar("T")
PUBLISH_THREADS = 32  # publishes waiting on Redis at once; each holds a thread for one round trip
READY_TIMEOUT = 3.0  # seconds a readiness probe waits for a worker's RPC answer


class Memory:
    def __init__(self, settings: Settings, *, worker: bool | None = None, runtime: Runtime | None = None) -> None:
        """`worker`: run an in-process worker (default: on the embedded store when this process owns it)."""
        self.settings = settings
        self.want_worker = worker
        self.runtime = runtime or get_runtime()
        self.mode: Mode = "local"
        self._worker: Any = None
        self._threads = ThreadPoolExecutor(PUBLISH_THREADS, thread_name_prefix="memoryos-http-publish")

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """The hot path's hop off the event loop: asyncio's executor thread costs about 10 µs of CPU per
        call here, anyio's worker threads (Starlette's run_in_threadpool) 30-40 µs."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)

    @property
    def publisher(self) -> Publisher:
        return self.runtime.publisher

    # -- lifecycle ------------------------------------------------------------------------------
    def open(self) -> Memory:
        from memoryos_workers.vectorstore import StoreLockedError

        try:
            self.runtime.warm_up()
        except StoreLockedError:
            self.mode = "rpc"
            log.info("another process holds the vector store at %s: reads go to its worker over RPC",
                     self.settings.data_dir)
            return self
        if self.want_worker or (self.want_worker is None and self.settings.embedded):
            from memoryos_workers.worker.embedded import EmbeddedWorker

            self._worker = EmbeddedWorker(self.runtime).start()
        log.info("memory ready: store %s, reads in this process, workers %s",
                 self.settings.qdrant_url or self.settings.data_dir,
                 "in-process" if self._worker is not None else "external")
        return self

    def close(self) -> None:
        self._threads.shutdown(wait=True)
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop(timeout=10)
        if self.mode == "local":
            self.runtime.close()

    def describe(self) -> dict[str, str]:
        return {
            "reads": "in-process" if self.mode == "local" else "rpc",
            "workers": "in-process" if self._worker is not None else "external",
            "store": "qdrant-server" if self.settings.qdrant_url else "embedded",
        }

    # -- writes -----------------------------------------------------------------------------------
    def make_turn(self, data: dict[str, Any]) -> Turn:
        return self.publisher.make_turn(data)

    def publish(self, turns: Sequence[Turn]) -> list[str]:
        return self.publisher.store(turns)

    # -- reads ------------------------------------------------------------------------------------
    def retrieve(self, user_id: str, query: str, *, assistant_id: str | None, top_k: int | None,
                 **options: Any) -> RetrievedContext:
        """`options`: retrieval's keyword-only parameters (max_tokens, now, filters), passed as they are."""
        if self.mode == "local":
            from memoryos_workers.in_process import retrieve

            return retrieve(user_id, query, assistant_id=assistant_id, top_k=top_k, runtime=self.runtime, **options)
        from producers.retrieve import retrieve as retrieve_rpc

        return retrieve_rpc(user_id, query, assistant_id=assistant_id, top_k=top_k, publisher=self.publisher,
                            **options)

    def operation(self, op: str, user_id: str | None) -> Any:
        """export, forget, inspect, dead_list or dead_replay (memoryos_workers.ops.commands), as JSON."""
        if self.mode == "local":
            from memoryos_workers.ops.commands import run

            return json.loads(json.dumps(run(self.runtime, op, user_id), ensure_ascii=False, default=str))
        from producers.operations import call_admin

        return call_admin(op, user_id, publisher=self.publisher)

    def export(self, user_id: str) -> Iterator[dict[str, Any]]:
        if self.mode == "local":
            from memoryos_workers.ops.user_data import collect_user_records

            for record in collect_user_records(self.runtime, user_id):
                yield json.loads(json.dumps(record, ensure_ascii=False, default=str))
        else:
            yield from self.operation("export", user_id)

    def persona(self, user_id: str, assistant_id: str) -> dict[str, Any]:
        """The profile, the user's facts and the assistant's facts for this user, as JSON."""
        if self.mode == "local":
            from memoryos_workers.in_process import read_persona

            def read(kind: str, user: str | None, assistant: str | None) -> Any:
                return read_persona(kind, user, assistant, self.runtime)
        else:
            from producers import persona as remote

            def read(kind: str, user: str | None, assistant: str | None) -> Any:  # type: ignore[misc]
                if kind == "profile":
                    found = remote.get_user_profile(str(user), publisher=self.publisher)
                    return found.model_dump(mode="json") if found else None
                if kind == "user":
                    return [e.model_dump(mode="json") for e in remote.get_user_knowledge(str(user),
                                                                                       publisher=self.publisher)]
                entries = remote.get_assistant_knowledge(str(assistant), user, publisher=self.publisher)
                return [e.model_dump(mode="json") for e in entries]

        return {
            "profile": read("profile", user_id, None),
            "user_knowledge": read("user", user_id, None),
            "assistant_knowledge": read("assistant", user_id, assistant_id),
        }

    def users(self, prefix: str, after: str | None, limit: int) -> list[str]:
        from producers.wire.state import users

        return users(self.publisher.redis, self.publisher.keys.users, prefix=prefix, after=after, limit=limit)

    def stats(self) -> dict[str, Any]:
        from memoryos_workers.counters import deployment_stats

        return deployment_stats(self.publisher)

    def readiness(self) -> dict[str, str]:
        """Redis answers, and the vector store does (here, or through a worker over RPC)."""
        checks: dict[str, str] = {}
        try:
            self.publisher.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001 - a probe reports, it does not raise
            checks["redis"] = f"unavailable ({type(exc).__name__})"
        try:
            if self.mode == "local":
                self.runtime.pages.count("readyz-probe")
            else:
                from producers.operations import call_admin

                call_admin("dead_list", "readyz-probe", timeout=READY_TIMEOUT, publisher=self.publisher)
            checks["vector_store"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["vector_store"] = f"unavailable ({type(exc).__name__})"
        return checks

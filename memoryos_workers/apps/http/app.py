"""The ASGI app: `create_app()` for uvicorn (`memoryos serve` runs it), any ASGI server, or tests."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from memoryos_workers.apps.http import errors
from memoryos_workers.apps.http.auth import Keyring, NoKeysError
from memoryos_workers.apps.http.metrics import HttpMetrics, make_registry
from memoryos_workers.apps.http.middleware import BodyLimit, SecurityHeaders
from memoryos_workers.apps.http.routes import facts, health, operations, retrieval, turns, users
from memoryos_workers.apps.http.ui import views
from memoryos_workers.heap import freeze_startup_heap
from memoryos_workers.interface import Memory, open_memory
from memoryos_workers.tracing import instrument_app
from producers.tracing import flush as flush_traces
from schemas.settings import Settings, get_settings

log = logging.getLogger("memoryos.http")

DESCRIPTION = """Memory for chat agents over HTTP: publish turns, retrieve context, read and forget users.

Every /v1 route needs `Authorization: Bearer KEY` (MEMORYOS_API_KEYS maps keys to tenants; a tenant's
user ids are its own namespace). Errors come as `{"error": ..., "detail": [{"field", "message"}]}`:
422 names the field (nothing was stored), 413 a body over the limit, 503 with Retry-After while Redis
does not answer (retry with the same turn_id)."""
PUBLISH_THREADS = 32  # publishes waiting on Redis at once; each holds a thread for one round trip


def create_app(settings: Settings | None = None, memory: Memory | None = None, *, worker: bool | None = None,
               freeze_heap: bool = False) -> FastAPI:
    """`memory` defaults to `open_memory(settings, worker=worker)` at start-up (memoryos_workers.interface
    decides local or remote, and whether an in-process worker runs). `freeze_heap`: once it is open, freeze
    the process's heap (memoryos_workers/heap.py; `memoryos serve`, which owns its process)."""
    settings = settings or get_settings()
    keys = settings.tenant_keys()
    if not keys:
        raise NoKeysError(
            "MEMORYOS_API_KEYS is not set: the API serves nobody without keys. Set it to KEY=TENANT pairs, e.g. "
            "MEMORYOS_API_KEYS=\"$(python -c 'import secrets; print(secrets.token_urlsafe(32))')=default\""
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Model and store open before the port answers, so the first request is not the slow one.
        if app.state.memory is None:
            app.state.memory = await run_in_threadpool(open_memory, settings, worker=worker)
        if freeze_heap:
            freeze_startup_heap()
        try:
            yield
        finally:
            app.state.publish_threads.shutdown(wait=True)
            await run_in_threadpool(app.state.memory.close)
            flush_traces()  # uvicorn re-raises SIGTERM once shut down: atexit would not export the last spans

    app = FastAPI(title="MemoryOS workers", version=_version(), description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.memory = memory
    # The hot path's hop off the event loop: asyncio's executor thread costs about 10 µs of CPU per call
    # here, anyio's worker threads (Starlette's run_in_threadpool) 30-40 µs.
    app.state.publish_threads = ThreadPoolExecutor(PUBLISH_THREADS, thread_name_prefix="memoryos-http-publish")
    app.state.keyring = Keyring(keys, settings.assistant_id)
    app.state.registry = make_registry(lambda: app.state.memory.stats())
    errors.install(app)
    for module in (turns, retrieval, users, facts, operations, health):
        app.include_router(module.router)
    views.mount(app)
    # Outermost first on the way in: headers on every answer (413s included), then the size limit.
    app.add_middleware(HttpMetrics, registry=app.state.registry)
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(SecurityHeaders)
    instrument_app(app)  # request spans, when OTEL_* asks for traces
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("memoryos-workers")
    except PackageNotFoundError:
        return "dev"

"""Probes and metrics: /healthz (the process lives), /readyz (Redis and the vector store answer),
/metrics (Prometheus text; a valid key unless MEMORYOS_METRICS_PUBLIC)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from memoryos_workers.apps.http.answers import Health, Readiness, ok
from memoryos_workers.apps.http.auth import require_principal
from memoryos_workers.apps.http.errors import responses, unavailable
from memoryos_workers.apps.http.routes import memory_of

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process lives", response_model=None, responses=ok(Health))
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Redis and the vector store answer", response_model=None,
            responses={**ok(Readiness), 503: {"model": Readiness, "description": "Not ready: `checks` says what.",
                                               "headers": responses(503)[503]["headers"]}})
def readyz(request: Request) -> Any:
    memory = memory_of(request)
    checks = memory.readiness()
    ready = all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks, **memory.describe()}
    return JSONResponse(body, status_code=200 if ready else 503, headers={} if ready else {"Retry-After": "5"})


@router.get("/metrics", summary="Prometheus metrics (a valid key unless MEMORYOS_METRICS_PUBLIC)",
            response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **responses(401, 503)})
async def metrics(request: Request) -> Response:
    if not memory_of(request).settings.metrics_public:
        await require_principal(request)
    try:
        text = await run_in_threadpool(generate_latest, request.app.state.registry)
    except Exception as exc:  # noqa: BLE001 - the deployment's series need Redis
        return unavailable(f"metrics need Redis, which did not answer ({type(exc).__name__})")
    return Response(text, media_type=CONTENT_TYPE_LATEST)

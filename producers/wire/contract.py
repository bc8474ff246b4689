"""Task and queue names shared by both sides; producers send by name and never import workers."""

from __future__ import annotations

from typing import Any

from producers.broker import celery_broker_config
from producers.broker import queues as broker_queues
from schemas.settings import Settings

PROMOTE_TASK = "memoryos.promote"
SWEEP_TASK = "memoryos.sweep"
REFRESH_HEAT_TASK = "memoryos.refresh_heat"
EXTRACT_PERSONA_TASK = "memoryos.extract_persona"
RETRIEVE_TASK = "memoryos.retrieve"
READ_PERSONA_TASK = "memoryos.read_persona"
ADMIN_TASK = "memoryos.admin"

# An RPC answer in the caller's reply list: one of these tags, then JSON (ok) or a message. Busy: a retryable
# refusal, then JSON naming its type, message and retry_after (producers.wire.rpc.busy_reply), so the caller
# raises the same error the worker did.
REPLY_OK, REPLY_INVALID, REPLY_ERROR, REPLY_BUSY = "ok:", "invalid:", "error:", "busy:"

# Deployment counters (the stats hash) of retrievals answered from Redis alone past their deadline; the
# caller counts them, since no worker saw them through. By cause: no server seen running, the request
# still waiting for a free server thread, or taken but not finished in time.
DEGRADED_COUNTERS = {
    "all": "retrievals_degraded",
    "no_server": "retrievals_degraded_no_server",
    "queued": "retrievals_degraded_queued",
    "slow": "retrievals_degraded_slow",
}

INGEST_QUEUE = "memoryos.ingest"
PERSONA_QUEUE = "memoryos.persona"
RETRIEVAL_QUEUE = "memoryos.retrieval"
ALL_QUEUES = (INGEST_QUEUE, PERSONA_QUEUE, RETRIEVAL_QUEUE)

TASK_ROUTES = {
    PROMOTE_TASK: {"queue": INGEST_QUEUE},
    SWEEP_TASK: {"queue": INGEST_QUEUE},
    REFRESH_HEAT_TASK: {"queue": PERSONA_QUEUE},
    EXTRACT_PERSONA_TASK: {"queue": PERSONA_QUEUE},
    RETRIEVE_TASK: {"queue": RETRIEVAL_QUEUE},
    READ_PERSONA_TASK: {"queue": RETRIEVAL_QUEUE},
    ADMIN_TASK: {"queue": RETRIEVAL_QUEUE},
}


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery options both sides must agree on (broker and its queues, serialisation, key prefix, routes);
    the broker's own part (memory Redis by default, or MEMORYOS_BROKER_URL) comes from producers.broker."""
    return {
        **celery_broker_config(settings),
        "task_queues": broker_queues(ALL_QUEUES, settings),
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_routes": TASK_ROUTES,
        "task_default_queue": INGEST_QUEUE,
        "result_expires": settings.result_expires,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 3,
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
        "enable_utc": True,
    }

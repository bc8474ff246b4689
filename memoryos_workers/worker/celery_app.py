"""The Celery app: `celery -A memoryos_workers worker` finds it as `memoryos_workers.app`.

Delivery is at-least-once (acks_late); the tasks are idempotent kicks ("drain user X") whose state
lives in Redis, so a duplicate or re-delivered message changes nothing twice.
"""

from __future__ import annotations

from celery import Celery

from memoryos_workers import tracing
from memoryos_workers.worker.retrieval_server import RetrievalLane
from producers.wire.contract import SWEEP_TASK, celery_config
from schemas.settings import Settings, get_settings

from . import kombu_fix

# Before any broker connection: without it a worker exits when its Redis broker restarts (see kombu_fix).
kombu_fix.install()


def make_app(settings: Settings) -> Celery:
    app = Celery("memoryos_workers", include=["memoryos_workers.worker.tasks"])
    app.conf.update(celery_config(settings))  # the broker and its queues included (producers.broker)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        worker_send_task_events=False,
        # Redis restarts and failovers are routine: reconnect for as long as it takes. (Celery's default
        # gives up after 100 attempts, about 45 minutes, and the worker process exits.)
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        # Tasks running when the broker connection drops are left to finish: a thread cannot be
        # cancelled (the threads pool raises NotImplementedError), and they need not be, as each task
        # is an idempotent kick whose writes are fenced by the user's lock; whatever one leaves undone
        # stays pending in Redis and is kicked again (by its own drain's check or the sweep).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # The embedded store belongs to one process: its workers are threads of that process.
        worker_pool="threads" if settings.embedded else "prefork",
        worker_concurrency=4 if settings.embedded else None,
        beat_schedule={
            "memoryos-sweep": {"task": SWEEP_TASK, "schedule": settings.sweep_interval, "options": {"expires": 60}},
        },
    )
    # Retrieval servers on threads of their own in every worker that consumes the retrieval queue.
    app.steps["worker"].add(RetrievalLane)
    tracing.install_celery_hooks()  # spans when a worker or beat starts with OTEL_* asking for them
    return app


app = make_app(get_settings())

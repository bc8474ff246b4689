"""MemoryOS workers: Celery tasks that build mid-term and long-term memory, and the retrieval side.

`celery -A memoryos_workers worker` finds the Celery app here as `app`.
"""

from .celery_app import app

__all__ = ["app"]

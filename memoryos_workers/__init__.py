"""MemoryOS workers: Celery tasks that build mid-term and long-term memory, and the retrieval side.

`celery -A memoryos_workers worker` finds the Celery app here as `app`.
"""

from typing import Any

from .celery_app import app

__all__ = ["Memoryos", "app"]


def __getattr__(name: str) -> Any:
    """`from memoryos_workers import Memoryos` without loading it for every Celery worker start."""
    if name == "Memoryos":
        from .memoryos import Memoryos

        return Memoryos
    raise AttributeError(name)

"""MemoryOS workers: Celery tasks that build mid-term and long-term memory, and the retrieval side.

`celery -A memoryos_workers worker` finds the Celery app here as `app`.

The package is laid out as the data flows: `pipeline/` (promotion, segmentation, persona extraction),
`memory/` (the stores of pages, segments, heat and persona), `retrieval/`, with the adapters they use
(`llm/`, `embeddings/`, `vectorstore/`), `worker/` (the Celery app and tasks), `ops/` (operators'
commands) and `apps/` (CLI, MCP server, the `Memoryos` class). `runtime.py` composes them.
"""

from typing import Any

__all__ = ["Memoryos", "app"]


def __getattr__(name: str) -> Any:
    """Both lazily: importing a submodule (the test double in `testing/`, a store) must not build the
    Celery app, which reads the settings once and would freeze them before the caller sets its own."""
    if name == "app":
        from schemas.settings_errors import exit_on_settings_error

        # `celery -A memoryos_workers ...` prints any exception with its traceback: a settings problem is
        # one line naming the variable instead, and a non-zero exit.
        with exit_on_settings_error():
            from memoryos_workers.worker.celery_app import app
        return app
    if name == "Memoryos":
        from memoryos_workers.apps.memoryos import Memoryos

        return Memoryos
    raise AttributeError(name)

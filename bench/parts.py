"""The benchmark's parts, each a module bench/<name>.py, found by name so a part being written never
stops the others (used by the runner and by the report)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

ORDER = ("publish", "ingest", "retrieval", "context", "llm_cost", "llm_budget", "profiling", "http_api",
         "retrieval_load", "scale", "facts")


def load_part(name: str) -> ModuleType | None:
    """The part's module, or None (with the reason printed) when it is not there or does not import."""
    if importlib.util.find_spec(f"bench.{name}") is None:
        print(f"bench: part {name!r} skipped: bench/{name}.py does not exist yet", file=sys.stderr)
        return None
    try:
        return importlib.import_module(f"bench.{name}")
    except Exception as exc:  # noqa: BLE001 - a part being written must not stop the others
        print(f"bench: part {name!r} skipped: importing it failed ({type(exc).__name__}: {exc})", file=sys.stderr)
        return None

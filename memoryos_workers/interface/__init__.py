"""One memory interface for every app: `Memory`, its local and remote implementations, and the one place
that chooses between them (`open_memory`, `shared_memory`). See base.py."""

from memoryos_workers.interface.base import FactKind, Memory
from memoryos_workers.interface.factory import close_shared, open_memory, shared_memory
from memoryos_workers.interface.local import LocalMemory
from memoryos_workers.interface.remote import RemoteMemory

__all__ = ["FactKind", "LocalMemory", "Memory", "RemoteMemory", "close_shared", "open_memory", "shared_memory"]

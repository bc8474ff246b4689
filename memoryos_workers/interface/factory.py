"""Where local or remote memory is decided: once, here, from Settings.

- The vector store opens in this process (a Qdrant server, which any number of processes share, or the
  embedded store while no other process holds it): `LocalMemory`, reads in this process. The background
  work runs in an in-process Celery worker unless MEMORYOS_EXTERNAL_WORKERS says the deployment runs its
  own (`memoryos worker`); an app may ask for none (`worker=False`, a one-shot CLI command).
- The embedded store is held by another process (a running `memoryos worker`): `RemoteMemory`, reads over
  the retrieval lane and operators' commands on that worker.

`shared_memory` keeps one memory per store in a process: the embedded store has one opener, and several
`Memoryos` objects (one per user) or MCP calls share it and its worker.
"""

from __future__ import annotations

import atexit
import logging
import threading

from memoryos_workers.interface.base import Memory
from memoryos_workers.interface.local import LocalMemory
from memoryos_workers.interface.remote import RemoteMemory
from memoryos_workers.runtime import Runtime
from schemas.settings import Settings, get_settings

log = logging.getLogger("memoryos.memory")


def open_memory(settings: Settings | None = None, *, worker: bool | None = None, runtime: Runtime | None = None,
                ) -> Memory:
    """The memory for this process. `worker`: run an in-process worker when the store is opened here
    (default: unless MEMORYOS_EXTERNAL_WORKERS); `runtime`: an existing one to open (tests, the demo).
    A store that cannot be opened for another reason (vectors of another model, a bad path) raises
    memoryos_workers.vectorstore.VectorStoreError, which says what to do."""
    from memoryos_workers.vectorstore import StoreLockedError

    settings = settings or (runtime.settings if runtime is not None else get_settings())
    runtime = runtime or Runtime(settings)
    try:
        runtime.warm_up()  # the model loads and the store opens now, not on the first request
    except StoreLockedError:
        log.info("another process holds the vector store at %s: reads go to its worker over RPC", settings.data_dir)
        return RemoteMemory(runtime)
    run_worker = not settings.external_workers if worker is None else worker
    memory = LocalMemory(runtime, owns_runtime=True, run_worker=run_worker)
    log.info("memory ready: store %s, reads in this process, workers %s",
             settings.qdrant_url or settings.data_dir, "in-process" if run_worker else "external")
    return memory


_shared: dict[tuple[str, ...], Memory] = {}
_shared_lock = threading.Lock()
_closes_at_exit: list[bool] = []


def shared_memory(settings: Settings) -> Memory:
    """This process's memory of the store `settings` name, opened on first use and kept until
    `close_shared()` (or the end of the process)."""
    key = (str(settings.data_dir), str(settings.qdrant_url), settings.key_prefix, settings.embedding_model)
    with _shared_lock:
        memory = _shared.get(key)
        if memory is None:
            memory = _shared[key] = open_memory(settings)
            if not _closes_at_exit:
                atexit.register(close_shared)
                _closes_at_exit.append(True)
        return memory


def close_shared() -> None:
    """Stops the in-process workers and closes the stores of every shared memory, so an embedded store is
    flushed and let go (the next opener finds it clean). A later `shared_memory` opens afresh."""
    with _shared_lock:
        memories = list(_shared.values())
        _shared.clear()
    for memory in memories:
        try:
            memory.close()
        except Exception:  # noqa: BLE001 - shutting down: report, never mask the exit
            log.exception("error while closing the memory")

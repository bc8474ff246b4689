"""`memoryos serve`: the API on uvicorn, one process (run several behind a load balancer with
MEMORYOS_QDRANT_URL; on the embedded store one process owns the store and runs its own worker)."""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def serve(host: str = "127.0.0.1", port: int = 8080, *, worker: bool | None = None, log_level: str = "info",
          access_log: bool = True) -> None:
    import uvicorn

    from memoryos_workers.apps.http.app import create_app

    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    app = create_app(worker=worker, freeze_heap=True)  # this process is the server's own
    # uvicorn's access log shows method, path and status: ids, never a key (headers) nor a query's words
    # (the inspector sends queries by POST).
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log, proxy_headers=True,
                server_header=False, timeout_graceful_shutdown=30)

"""Running the MCP server on a transport until it ends, then closing the memory, so the in-process
worker stops and the embedded store is flushed however the server was stopped."""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING, Any

from memoryos_workers.apps.mcp.logging_setup import configure_logging
from memoryos_workers.apps.mcp.sdk import SDK_V2
from memoryos_workers.apps.mcp.service import MemoryService
from memoryos_workers.apps.mcp.tenancy import RequireKey, Tenancy, keyring_for
from memoryos_workers.apps.mcp.tools import build_server
from schemas.settings import get_settings

if TYPE_CHECKING:
    from memoryos_workers.apps.http.auth import Keyring

log = logging.getLogger("memoryos.mcp")

TRANSPORTS = ("stdio", "http")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def serve(
    transport: str = "stdio", host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, log_level: str = "INFO"
) -> None:
    """Run until the client goes away (stdio) or the process is stopped (http); then close the memory."""
    configure_logging(log_level)
    if transport not in TRANSPORTS:
        raise ValueError(f"transport: must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
    get_settings()  # a bad setting stops the command here, not later in the memory's start-up thread
    service = MemoryService()
    # SIGTERM (a stdio client that stops waiting, a process manager; uvicorn re-raises it after its own
    # graceful shutdown) unwinds through `finally`, so the worker stops and the store is flushed.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        if transport == "stdio":
            server = build_server(service)
            log.info("MCP server on stdio")
            server.run("stdio")
        else:
            keyring = keyring_for(get_settings(), host)  # before anything opens: no keys, no public port
            service.start()  # HTTP clients come and go; the memory opens with the process
            _serve_http(service, keyring, host, port, log_level)
    except KeyboardInterrupt:
        pass
    finally:
        service.close()
        log.info("MCP server stopped")


def _serve_http(service: MemoryService, keyring: Keyring | None, host: str, port: int, log_level: str) -> None:
    """The SDK's streamable-HTTP app behind the key check, on uvicorn (as the SDK's own run() does)."""
    import uvicorn

    if SDK_V2:
        server = build_server(service, Tenancy(keyring))
        app: Any = server.streamable_http_app(host=host)
    else:  # pragma: no cover - mcp 1.x takes host and port as settings
        server = build_server(service, Tenancy(keyring), host=host, port=port)
        app = server.streamable_http_app()
    if keyring is not None:
        app = RequireKey(app, keyring)
    log.info("MCP server on http://%s:%d/mcp (%s)", host, port, "API keys required" if keyring else "no keys")
    uvicorn.run(app, host=host, port=port, log_level=log_level.lower(), log_config=None, server_header=False)


def _exit_on_signal(_signum: int, _frame: Any) -> None:
    raise SystemExit(0)  # asked to stop: a clean stop

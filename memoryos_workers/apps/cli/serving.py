"""Commands that run something until stopped: the demo, the MCP server, the HTTP API, a worker, beat."""

from __future__ import annotations

import typer

from memoryos_workers.apps.cli.access import fail
from producers.wire.contract import ALL_QUEUES


def demo(
    keep: bool = typer.Option(False, "--keep", help="Keep the demo user afterwards (default: it is forgotten)."),
) -> None:
    """Replay a sample conversation through an in-process worker and print what each tier holds."""
    from memoryos_workers.apps.demo import run_demo
    from memoryos_workers.vectorstore import StoreLockedError

    try:
        run_demo(keep=keep)
    except StoreLockedError as exc:
        fail(str(exc), exc)


def mcp(
    transport: str = typer.Option("stdio", "--transport", "-t", help="stdio or http (streamable HTTP)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (http only)."),
    port: int = typer.Option(8765, "--port", "-p", min=1, max=65535, help="Port to listen on (http only)."),
) -> None:
    """Run the MCP server (add_memory, retrieve_memory, get_user_profile); logs go to stderr. Over http the
    keys of MEMORYOS_API_KEYS are required and each key's tenant has its own users, as in `memoryos serve`."""
    from memoryos_workers.apps.http.auth import NoKeysError
    from memoryos_workers.apps.mcp.server import TRANSPORTS, serve

    if transport not in TRANSPORTS:
        fail(f"unknown transport {transport!r}; known: {', '.join(TRANSPORTS)}")
    try:
        serve(transport, host=host, port=port)
    except NoKeysError as exc:
        fail(str(exc), exc)


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", "-p", min=1, max=65535),
    worker: bool | None = typer.Option(
        None, "--worker/--no-worker",
        help="Run an in-process worker (default: unless MEMORYOS_EXTERNAL_WORKERS, when this process opens the "
        "store)."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log"),
) -> None:
    """Run the HTTP API, the memory inspector (/ui) and /metrics; keys come from MEMORYOS_API_KEYS."""
    from memoryos_workers.apps.http.auth import NoKeysError
    from memoryos_workers.apps.http.server import serve as run
    from memoryos_workers.vectorstore import VectorStoreError

    try:
        run(host, port, worker=worker, access_log=access_log)
    except (NoKeysError, VectorStoreError) as exc:
        fail(str(exc), exc)


def worker(
    ctx: typer.Context,
    queues: str = typer.Option(",".join(ALL_QUEUES), "--queues", "-Q", help="Queues to consume."),
    concurrency: int | None = typer.Option(None, "--concurrency", "-c"),
    loglevel: str = typer.Option("INFO", "--loglevel", "-l"),
) -> None:
    """Run a Celery worker on our queues (extra options go to `celery worker`)."""
    from memoryos_workers.worker.celery_app import app

    unknown = sorted(set(queues.split(",")) - set(ALL_QUEUES))
    if unknown:
        fail(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(ALL_QUEUES)}")
    argv = ["worker", "-Q", queues, "-l", loglevel]
    if concurrency:
        argv += ["-c", str(concurrency)]
    app.worker_main(argv + list(ctx.args))


def beat(loglevel: str = typer.Option("INFO", "--loglevel", "-l")) -> None:
    """Run Celery beat (the pending-batch sweep). Run exactly one."""
    from memoryos_workers.worker.celery_app import app

    app.start(["beat", "-l", loglevel])

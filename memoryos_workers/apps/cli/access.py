"""How a command reaches the memory: one `Memory` from memoryos_workers.interface (local when this process
can open the store, over RPC to the worker that holds it otherwise), and the usage errors every command
shares, as one line on stderr and exit status 2."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from schemas.turns import check_id

if TYPE_CHECKING:
    from memoryos_workers.interface import Memory


def fail(message: str, exc: BaseException | None = None) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2) from exc


def checked_id(name: str, value: str | None, *, required: bool = True) -> str | None:
    """schemas' id rule, as a usage error naming the argument or option."""
    try:
        return check_id(name, value, required=required)
    except ValueError as exc:
        fail(str(exc), exc)


def user_arg(user_id: str) -> str:
    return checked_id("USER", user_id)  # type: ignore[return-value]  # required: never None


def answering_workers(*, limit: int | None = None) -> list[str]:
    """This deployment's workers that answer within a second; exits with what to do when Redis cannot be asked."""
    from memoryos_workers.worker.embedded import answering_workers as ping

    try:
        return ping(timeout=1.0, limit=limit)
    except Exception as exc:  # noqa: BLE001 - kombu/redis raise several connection errors
        fail(f"could not ask Redis which workers run ({type(exc).__name__}: {exc})", exc)


def open_for_command() -> Memory:
    """The memory for a one-shot command (no in-process worker): here when the store is free; else the worker
    that holds it answers over RPC, which is said on stderr (and refused at once when no worker answers)."""
    from memoryos_workers.interface import open_memory
    from memoryos_workers.vectorstore import VectorStoreError

    try:
        memory = open_memory(worker=False)
    except VectorStoreError as exc:  # e.g. the store holds vectors of another embedding model
        fail(str(exc), exc)
    if memory.mode == "remote":
        where = memory.settings.data_dir
        if not answering_workers(limit=1):
            fail(f"the local vector store at {where} is held by another process, and no worker of this deployment "
                 "answers to run the command over RPC: let the process that holds the store finish (or stop it), "
                 "then run this again")
        typer.echo("note: a running worker holds the local vector store; asking it over RPC", err=True)
    return memory


def run_command(op: str, *args: Any) -> Any:
    """`Memory.<op>(*args)` on the command's memory, with a worker's refusal or silence as a usage error."""
    from producers.errors import MemoryOSError

    memory = open_for_command()
    try:
        answer = getattr(memory, op)(*args)
        return list(answer) if isinstance(answer, Iterator) else answer  # read before the store closes
    except TimeoutError as exc:
        fail(f"the worker that holds the store did not answer over RPC: {exc}", exc)
    except (MemoryOSError, ValueError) as exc:
        fail(str(exc), exc)
    finally:
        memory.close()

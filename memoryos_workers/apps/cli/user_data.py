"""Commands about users' data: import a file of turns, export, forget, inspect."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import typer
from pydantic import ValidationError

from memoryos_workers.apps.cli.access import answering_workers, checked_id, fail, run_command, user_arg

WAIT_TIMEOUT = 600.0  # `import --wait`: per user, once a worker is working on it


def import_(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="JSONL, JSON list or LoCoMo."),
    user: str | None = typer.Option(None, "--user", "-u", help="User for records that name none."),
    assistant: str | None = typer.Option(None, "--assistant", "-a"),
    batch: int = typer.Option(500, min=1, max=10_000, help="Turns per pipelined publish."),
    wait: bool = typer.Option(
        False, help="Wait until the imported users' turns are processed (here, by an in-process worker, if none runs)."
    ),
) -> None:
    """Publish a file of turns (batched, resumable: turns already stored are skipped by turn_id)."""
    from tqdm import tqdm

    from memoryos_workers.ops.importers import ImportFileError, read_turns
    from producers import default_publisher

    checked_id("--user", user, required=False)
    checked_id("--assistant", assistant, required=False)
    try:
        turns = read_turns(file, user, assistant)
    except ImportFileError as exc:
        fail(f"{file}: {exc}", exc)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        fail(f"{file} is not JSON Lines, a JSON list or a LoCoMo file: {exc}", exc)
    publisher = default_publisher()
    with tqdm(total=len(turns), desc=f"importing {file.name}", unit="turn", disable=not sys.stderr.isatty()) as bar:
        for start in range(0, len(turns), batch):
            chunk = turns[start : start + batch]
            try:
                publisher.publish_many(chunk)
            except (ValidationError, ValueError, TypeError) as exc:
                fail(f"records {start + 1}-{start + len(chunk)}: {exc}", exc)
            bar.update(len(chunk))
    users = sorted({t["user_id"] for t in turns if t.get("user_id")})
    typer.echo(f"published {len(turns)} turns for {len(users)} user(s) from {file}")
    if wait:
        _wait_until_processed(users)


def _wait_until_processed(users: list[str]) -> None:
    """Waits on the deployment's workers when one answers (Redis alone tells when they are done); otherwise
    processes here with an in-process worker (as `demo` and `mcp` do), so a first try on the embedded
    default neither hangs nor times out."""
    from memoryos_workers.interface import open_memory
    from memoryos_workers.vectorstore import VectorStoreError
    from producers.pending import wait_idle

    if answering_workers(limit=1):
        _wait_each(users, wait_idle)
        return
    typer.echo("note: no worker of this deployment answers; processing with an in-process worker", err=True)
    try:
        memory = open_memory(worker=True)
    except VectorStoreError as exc:  # vectors of another model, ...
        fail(f"{exc}\nthe turns are published and wait in Redis; start `memoryos worker`", exc)
    try:
        if not memory.runs_worker:
            fail(f"the local vector store at {memory.settings.data_dir} is held by another process that runs no "
                 "worker\nthe turns are published and wait in Redis; start `memoryos worker`")
        _wait_each(users, memory.wait_idle)
    finally:
        memory.close()  # stops the worker and flushes the embedded store: the next opener finds the pages


def _wait_each(users: list[str], wait: Callable[..., None]) -> None:
    for user_id in users:
        try:
            wait(user_id, timeout=WAIT_TIMEOUT, flush=True)
        except TimeoutError as exc:
            fail(f"{exc}\n`memoryos inspect {user_id}` shows what is still pending", exc)


def export(user: str = typer.Argument(..., help="User id.")) -> None:
    """Write every stored record of a user as JSON Lines to stdout."""
    for record in run_command("export", user_arg(user)):
        sys.stdout.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


def forget(
    user: str = typer.Argument(..., help="User id."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete every tier of a user from Redis and the vector store."""
    user_arg(user)
    if not yes and not typer.confirm(f"Delete all memory of user {user!r}?"):
        raise typer.Exit(1)
    removed = run_command("forget", user)
    typer.echo("removed: " + ", ".join(f"{k} {v}" for k, v in removed.items()))


def inspect(user: str = typer.Argument(..., help="User id.")) -> None:
    """Show what each tier holds for a user: short-term, pending, segments with heat, profile, facts."""
    view = run_command("inspect", user_arg(user))
    typer.echo(f"user {user}")
    typer.echo(f"\nSHORT-TERM ({len(view['short_term'])} turns)")
    for p in view["short_term"]:
        typer.echo(f"  {p['seq']:>6}  {p['timestamp'][:16].replace('T', ' ')}  {clip(p['user_input'], 90)}")
    typer.echo(f"\nPENDING: {view['pending_turns']} turns waiting for a worker; "
               f"DEAD LETTERS: {view['dead_batches']} batches")
    typer.echo(f"\nMID-TERM: {view['pages']} pages in {len(view['segments'])} segments")
    typer.echo(f"  {'heat':>7} {'pages':>5} {'visits':>6}  {'source':8}  theme / keywords")
    for seg in view["segments"]:
        typer.echo(
            f"  {seg['heat']:7.2f} {seg['pages']:>5} {seg['visits']:>6}  {seg['source']:8}  "
            f"{clip(seg['theme'], 40)} [{clip(', '.join(seg['keywords']), 50)}]"
        )
    typer.echo("\nPROFILE")
    typer.echo("  " + (view["profile"].replace("\n", "\n  ") if view["profile"] else "(none yet)"))
    for kind, facts in view["facts"].items():
        typer.echo(f"\n{kind.upper()} KNOWLEDGE ({len(facts)})")
        for f in facts:
            typer.echo(f"  {f.get('date') or '          '}  {clip(f['text'], 100)}")


def clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"

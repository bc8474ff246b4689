"""The `memoryos` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from pydantic import ValidationError

from producers.wire.contract import ALL_QUEUES
from schemas.turns import check_id

if TYPE_CHECKING:
    from memoryos_workers.runtime import Runtime

WAIT_TIMEOUT = 600.0  # `import --wait`: per user, once a worker is working on it

cli = typer.Typer(help="MemoryOS workers: memory for chat agents, built in the background.", no_args_is_help=True)
dead_cli = typer.Typer(help="List and replay dead letters.", no_args_is_help=True)
cli.add_typer(dead_cli, name="dead-letters")


def _admin(op: str, user_id: str | None) -> Any:
    """Runs an operator's command here when this process can open the store, and otherwise (the
    embedded setup, a worker holds the local store) on that worker over RPC."""
    from memoryos_workers.ops.commands import run
    from memoryos_workers.runtime import get_runtime
    from memoryos_workers.vectorstore import StoreLockedError, VectorStoreError

    rt = get_runtime()
    try:
        rt.warm_up()
    except StoreLockedError as exc:
        return _admin_over_rpc(op, user_id, exc)
    except VectorStoreError as exc:  # e.g. the store holds vectors of another embedding model
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    return run(rt, op, user_id)


def _admin_over_rpc(op: str, user_id: str | None, locked: Exception) -> Any:
    from producers.errors import MemoryOSError
    from producers.operations import call_admin

    if not _answering_workers(limit=1):
        typer.echo(
            f"error: {locked}\nand no worker of this deployment answers to run the command over RPC: let the "
            "process that holds the store finish (or stop it), then run this again",
            err=True,
        )
        raise typer.Exit(2)
    typer.echo("note: a running worker holds the local vector store; asking it over RPC", err=True)
    try:
        return call_admin(op, user_id)
    except TimeoutError as exc:
        typer.echo(f"error: {locked}\nand it did not answer over RPC: {exc}", err=True)
        raise typer.Exit(2) from exc
    except (MemoryOSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _checked_id(name: str, value: str | None, *, required: bool = True) -> str | None:
    """schemas' id rule, as a usage error naming the argument or option."""
    try:
        return check_id(name, value, required=required)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _user(user_id: str) -> str:
    return _checked_id("USER", user_id)  # type: ignore[return-value]  # required: never None


def _answering_workers(*, limit: int | None = None) -> list[str]:
    """This deployment's workers that answer within a second; exits with what to do when Redis cannot be asked."""
    from memoryos_workers.worker.embedded import answering_workers

    try:
        return answering_workers(timeout=1.0, limit=limit)
    except Exception as exc:  # noqa: BLE001 - kombu/redis raise several connection errors
        typer.echo(f"error: could not ask Redis which workers run ({type(exc).__name__}: {exc})", err=True)
        raise typer.Exit(2) from exc


@cli.command()
def demo() -> None:
    """Replay a sample conversation through an in-process worker and print what each tier holds."""
    from memoryos_workers.apps.demo import run_demo
    from memoryos_workers.vectorstore import StoreLockedError

    try:
        run_demo()
    except StoreLockedError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@cli.command()
def mcp(
    transport: str = typer.Option("stdio", "--transport", "-t", help="stdio or http (streamable HTTP)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (http only)."),
    port: int = typer.Option(8765, "--port", "-p", min=1, max=65535, help="Port to listen on (http only)."),
) -> None:
    """Run the MCP server (add_memory, retrieve_memory, get_user_profile); logs go to stderr. Over http the
    keys of MEMORYOS_API_KEYS are required and each key's tenant has its own users, as in `memoryos serve`."""
    from memoryos_workers.apps.mcp.server import TRANSPORTS, serve
    from memoryos_workers.apps.mcp.tenancy import NoKeysError

    if transport not in TRANSPORTS:
        typer.echo(f"error: unknown transport {transport!r}; known: {', '.join(TRANSPORTS)}", err=True)
        raise typer.Exit(2)
    try:
        serve(transport, host=host, port=port)
    except NoKeysError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@cli.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", "-p", min=1, max=65535),
    worker: bool | None = typer.Option(
        None, "--worker/--no-worker",
        help="Run an in-process worker (default: yes on the embedded store when this process owns it)."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log"),
) -> None:
    """Run the HTTP API, the memory inspector (/ui) and /metrics; keys come from MEMORYOS_API_KEYS."""
    from memoryos_workers.apps.http.app import NoKeysError
    from memoryos_workers.apps.http.server import serve as run
    from memoryos_workers.vectorstore import VectorStoreError

    try:
        run(host, port, worker=worker, access_log=access_log)
    except (NoKeysError, VectorStoreError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@cli.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
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
        typer.echo(f"error: unknown queue(s) {', '.join(unknown)}; known: {', '.join(ALL_QUEUES)}", err=True)
        raise typer.Exit(2)
    argv = ["worker", "-Q", queues, "-l", loglevel]
    if concurrency:
        argv += ["-c", str(concurrency)]
    app.worker_main(argv + list(ctx.args))


@cli.command()
def beat(loglevel: str = typer.Option("INFO", "--loglevel", "-l")) -> None:
    """Run Celery beat (the pending-batch sweep). Run exactly one."""
    from memoryos_workers.worker.celery_app import app

    app.start(["beat", "-l", loglevel])


@cli.command("import")
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

    _checked_id("--user", user, required=False)
    _checked_id("--assistant", assistant, required=False)
    try:
        turns = read_turns(file, user, assistant)
    except ImportFileError as exc:
        typer.echo(f"error: {file}: {exc}", err=True)
        raise typer.Exit(2) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        typer.echo(f"error: {file} is not JSON Lines, a JSON list or a LoCoMo file: {exc}", err=True)
        raise typer.Exit(2) from exc
    publisher = default_publisher()
    with tqdm(total=len(turns), desc=f"importing {file.name}", unit="turn", disable=not sys.stderr.isatty()) as bar:
        for start in range(0, len(turns), batch):
            chunk = turns[start : start + batch]
            try:
                publisher.publish_many(chunk)
            except (ValidationError, ValueError, TypeError) as exc:
                typer.echo(f"error: records {start + 1}-{start + len(chunk)}: {exc}", err=True)
                raise typer.Exit(2) from exc
            bar.update(len(chunk))
    users = sorted({t["user_id"] for t in turns if t.get("user_id")})
    typer.echo(f"published {len(turns)} turns for {len(users)} user(s) from {file}")
    if wait:
        _wait_until_processed(users)


def _wait_until_processed(users: list[str]) -> None:
    """Waits on the deployment's workers when one answers; otherwise processes here with an in-process
    worker (as `demo` and `mcp` do), so a first try on the embedded default neither hangs nor times out."""
    from memoryos_workers.runtime import get_runtime
    from memoryos_workers.vectorstore import VectorStoreError
    from memoryos_workers.worker.embedded import EmbeddedWorker

    rt = get_runtime()
    if _answering_workers(limit=1):
        _wait_idle(rt, users)
        return
    typer.echo("note: no worker of this deployment answers; processing with an in-process worker", err=True)
    try:
        with EmbeddedWorker(rt):
            _wait_idle(rt, users)
    except VectorStoreError as exc:  # held by another process that is not a worker, another model, ...
        typer.echo(f"error: {exc}\nthe turns are published and wait in Redis; start `memoryos worker`", err=True)
        raise typer.Exit(2) from exc
    finally:
        rt.close()  # flush the embedded store: the next opener finds the promoted pages


def _wait_idle(rt: Runtime, users: list[str]) -> None:
    for user_id in users:
        try:
            rt.pending.wait_idle(user_id, timeout=WAIT_TIMEOUT, flush=True)
        except TimeoutError as exc:
            typer.echo(f"error: {exc}\n`memoryos inspect {user_id}` shows what is still pending", err=True)
            raise typer.Exit(2) from exc


@cli.command()
def export(user: str = typer.Argument(..., help="User id.")) -> None:
    """Write every stored record of a user as JSON Lines to stdout."""
    for record in _admin("export", _user(user)):
        sys.stdout.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


@cli.command()
def forget(
    user: str = typer.Argument(..., help="User id."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete every tier of a user from Redis and the vector store."""
    _user(user)
    if not yes and not typer.confirm(f"Delete all memory of user {user!r}?"):
        raise typer.Exit(1)
    removed = _admin("forget", user)
    typer.echo("removed: " + ", ".join(f"{k} {v}" for k, v in removed.items()))


@cli.command()
def inspect(user: str = typer.Argument(..., help="User id.")) -> None:
    """Show what each tier holds for a user: short-term, pending, segments with heat, profile, facts."""
    view = _admin("inspect", _user(user))
    typer.echo(f"user {user}")
    typer.echo(f"\nSHORT-TERM ({len(view['short_term'])} turns)")
    for p in view["short_term"]:
        typer.echo(f"  {p['seq']:>6}  {p['timestamp'][:16].replace('T', ' ')}  {_clip(p['user_input'], 90)}")
    typer.echo(f"\nPENDING: {view['pending_turns']} turns waiting for a worker; "
               f"DEAD LETTERS: {view['dead_batches']} batches")
    typer.echo(f"\nMID-TERM: {view['pages']} pages in {len(view['segments'])} segments")
    typer.echo(f"  {'heat':>7} {'pages':>5} {'visits':>6}  {'source':8}  theme / keywords")
    for seg in view["segments"]:
        typer.echo(
            f"  {seg['heat']:7.2f} {seg['pages']:>5} {seg['visits']:>6}  {seg['source']:8}  "
            f"{_clip(seg['theme'], 40)} [{_clip(', '.join(seg['keywords']), 50)}]"
        )
    typer.echo("\nPROFILE")
    typer.echo("  " + (view["profile"].replace("\n", "\n  ") if view["profile"] else "(none yet)"))
    for kind, facts in view["facts"].items():
        typer.echo(f"\n{kind.upper()} KNOWLEDGE ({len(facts)})")
        for f in facts:
            typer.echo(f"  {f.get('date') or '          '}  {_clip(f['text'], 100)}")


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


@cli.command()
def reembed(
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    skip_worker_check: bool = typer.Option(
        False, "--skip-worker-check", help="Do not ask over Redis whether workers still run (e.g. Redis is down)."
    ),
) -> None:
    """Re-embed every stored vector with the configured model, after changing MEMORYOS_EMBEDDING_MODEL.
    Stop the workers first (it refuses while any answers); an interrupted run is finished by running it again."""
    from tqdm import tqdm

    from memoryos_workers.embeddings.embedder import get_embedder
    from memoryos_workers.embeddings.sparse import get_sparse_encoder
    from memoryos_workers.ops.reembed import reembed as run
    from memoryos_workers.vectorstore import VectorStoreError, open_store
    from schemas.settings import get_settings

    settings = get_settings()
    embedder = get_embedder(settings)
    where = settings.qdrant_url or settings.data_dir
    if not skip_worker_check:
        _refuse_while_workers_run()
    if not yes and not typer.confirm(f"Re-embed every vector in {where} with {embedder.fingerprint}?"):
        raise typer.Exit(1)
    store = open_store(settings)
    try:
        with tqdm(desc="re-embedding", unit="vector", disable=not sys.stderr.isatty()) as bar:
            done = run(store, embedder, get_sparse_encoder(), progress=lambda _name, n: bar.update(n))
    except VectorStoreError as exc:  # held by a worker, another dimension, ...
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        store.close()
    typer.echo(f"re-embedded with {embedder.fingerprint}: " + ", ".join(f"{k} {v}" for k, v in done.items()))


def _refuse_while_workers_run() -> None:
    """A worker writing during a migration would mix two models in one collection. Collections carry a
    "migrating" mark, but a worker checks it only when it opens one, so ask the deployment's workers
    (the broker's control channel is under the deployment's key prefix) before anything changes."""
    from memoryos_workers.worker.embedded import answering_workers

    try:
        names = answering_workers(timeout=1.0)
    except Exception as exc:  # noqa: BLE001 - kombu/redis raise several connection errors
        typer.echo(
            f"error: could not ask Redis whether workers still run ({type(exc).__name__}: {exc}); "
            "stop every worker and run again with --skip-worker-check",
            err=True,
        )
        raise typer.Exit(2) from exc
    if names:
        typer.echo(
            f"error: {len(names)} worker(s) of this deployment still run ({', '.join(names)}); "
            "stop them first, re-embed, then start them with the new MEMORYOS_EMBEDDING_MODEL",
            err=True,
        )
        raise typer.Exit(2)


@cli.command()
def stats() -> None:
    """Counters: LLM calls and tokens, fallbacks, dead letters, retrievals (degraded ones by cause), users
    waiting for the sweep and how late the most overdue of them is (0 while workers keep up; it grows when
    none run), messages waiting per queue, the ingestion backlog (batches and turns waiting for a worker,
    age of the oldest), the retrieval lane (servers running, requests waiting), and how many workers answer
    a ping within a second (workers_alive; 0 means turns are accepted and nothing processes them)."""
    import redis

    from memoryos_workers.counters import deployment_stats, llm_cost_lines
    from producers import default_publisher

    publisher = default_publisher()
    try:
        counters = deployment_stats(publisher)
    except redis.RedisError as exc:
        typer.echo(f"error: Redis failed ({type(exc).__name__}: {exc})", err=True)
        raise typer.Exit(2) from exc
    counters["workers_alive"] = len(_answering_workers())
    for name in sorted(counters):
        typer.echo(f"{name:32} {counters[name]}")
    for line in llm_cost_lines(counters):
        typer.echo(line)


@dead_cli.command("list")
def dead_list(user: str | None = typer.Argument(None)) -> None:
    """Dead-lettered batches and persona extractions, with their errors."""

    rows = _admin("dead_list", _user(user) if user else None)
    if not rows:
        typer.echo("no dead letters")
    for r in rows:
        typer.echo(
            f"{r['user_id']}  {r['kind']:7} {r['id']:>12}  attempts {r['attempts']}  turns {r['turns']}  "
            f"{_clip(r['error'], 100)}"
        )


@dead_cli.command("replay")
def dead_replay(user: str | None = typer.Argument(None, help="User id; all users when omitted.")) -> None:
    """Put dead letters back in line (once the cause is fixed); workers process them again."""
    for u, done in _admin("dead_replay", _user(user) if user else None).items():
        typer.echo(f"{u}: re-queued {done['batches']} batch(es), {done['persona_pages']} persona page(s)")


def main(argv: list[str] | None = None) -> None:
    cli(args=argv if argv is not None else sys.argv[1:], prog_name="memoryos")


if __name__ == "__main__":
    main()

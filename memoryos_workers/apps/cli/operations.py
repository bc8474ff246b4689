"""Operators' commands about the deployment: counters, dead letters, re-embedding, BM25 terms."""

from __future__ import annotations

import sys

import typer

from memoryos_workers.apps.cli.access import answering_workers, fail, run_command, user_arg
from memoryos_workers.apps.cli.user_data import clip

dead_cli = typer.Typer(help="List and replay dead letters.", no_args_is_help=True)


def stats() -> None:
    """Counters: LLM calls and tokens, fallbacks, dead letters, retrievals (degraded ones by cause), users
    waiting for the sweep and how late the most overdue of them is (0 while workers keep up; it grows when
    none run), messages waiting per queue, the ingestion backlog (batches and turns waiting for a worker,
    age of the oldest), the retrieval lane (servers running, requests waiting), and how many workers answer
    a ping within a second (workers_alive; 0 means turns are accepted and nothing processes them)."""
    import redis

    from memoryos_workers.counters import deployment_stats, llm_cost_lines
    from producers import default_publisher

    publisher = default_publisher()  # counters live in Redis: no store to open
    try:
        counters = deployment_stats(publisher)
    except redis.RedisError as exc:
        fail(f"Redis failed ({type(exc).__name__}: {exc})", exc)
    counters["workers_alive"] = len(answering_workers())
    for name in sorted(counters):
        typer.echo(f"{name:32} {counters[name]}")
    for line in llm_cost_lines(counters):
        typer.echo(line)


@dead_cli.command("list")
def dead_list(user: str | None = typer.Argument(None)) -> None:
    """Dead-lettered batches and persona extractions, with their errors."""
    rows = run_command("dead_letters", user_arg(user) if user else None)
    if not rows:
        typer.echo("no dead letters")
    for r in rows:
        typer.echo(
            f"{r['user_id']}  {r['kind']:7} {r['id']:>12}  attempts {r['attempts']}  turns {r['turns']}  "
            f"{clip(r['error'], 100)}"
        )


@dead_cli.command("replay")
def dead_replay(user: str | None = typer.Argument(None, help="User id; all users when omitted.")) -> None:
    """Put dead letters back in line (once the cause is fixed); workers process them again."""
    for u, done in run_command("replay", user_arg(user) if user else None).items():
        typer.echo(f"{u}: re-queued {done['batches']} batch(es), {done['persona_pages']} persona page(s)")


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
        fail(str(exc), exc)
    finally:
        store.close()
    typer.echo(f"re-embedded with {embedder.fingerprint}: " + ", ".join(f"{k} {v}" for k, v in done.items()))


def _refuse_while_workers_run() -> None:
    """A worker writing during a migration would mix two models in one collection. Collections carry a
    "migrating" mark, but a worker checks it only when it opens one, so ask the deployment's workers
    (the broker's control channel is under the deployment's key prefix) before anything changes."""
    from memoryos_workers.worker.embedded import answering_workers as ping

    try:
        names = ping(timeout=1.0)
    except Exception as exc:  # noqa: BLE001 - kombu/redis raise several connection errors
        fail(f"could not ask Redis whether workers still run ({type(exc).__name__}: {exc}); "
             "stop every worker and run again with --skip-worker-check", exc)
    if names:
        fail(f"{len(names)} worker(s) of this deployment still run ({', '.join(names)}); "
             "stop them first, re-embed, then start them with the new MEMORYOS_EMBEDDING_MODEL")


def bm25_terms() -> None:
    """Add the BM25 terms to pages stored before pages carried them, so their users' page search weighs
    words by the user's own pages (until then such a user's BM25 uses the whole store's IDF). Safe to
    repeat; on the embedded store stop the workers first (it is held by one process)."""
    from tqdm import tqdm

    from memoryos_workers.embeddings.embedder import get_embedder
    from memoryos_workers.embeddings.sparse import get_sparse_encoder
    from memoryos_workers.memory.pages import PageStore
    from memoryos_workers.ops.bm25_terms import add_terms
    from memoryos_workers.vectorstore import VectorStoreError, open_store
    from schemas.settings import get_settings

    settings = get_settings()
    store = open_store(settings)
    try:
        with tqdm(desc="pages", unit="page", disable=not sys.stderr.isatty()) as bar:
            written = add_terms(PageStore(store, get_embedder(settings)), get_sparse_encoder(),
                                progress=lambda seen, _written: bar.update(seen))
    except VectorStoreError as exc:  # held by a worker, ...
        fail(str(exc), exc)
    finally:
        store.close()
    typer.echo(f"BM25 terms added to {written} page(s)")

"""The `memoryos` command."""

from __future__ import annotations

import sys

import typer

from producers.contract import ALL_QUEUES

cli = typer.Typer(help="MemoryOS workers: memory for chat agents, built in the background.", no_args_is_help=True)


@cli.command()
def demo() -> None:
    """Replay a sample conversation through an in-process worker and print what each tier holds."""
    from .demo import run_demo
    from .vectorstore import StoreLockedError

    try:
        run_demo()
    except StoreLockedError as exc:
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
    from .celery_app import app

    argv = ["worker", "-Q", queues, "-l", loglevel]
    if concurrency:
        argv += ["-c", str(concurrency)]
    app.worker_main(argv + list(ctx.args))


@cli.command()
def beat(loglevel: str = typer.Option("INFO", "--loglevel", "-l")) -> None:
    """Run Celery beat (the pending-batch sweep)."""
    from .celery_app import app

    app.start(["beat", "-l", loglevel])


def main(argv: list[str] | None = None) -> None:
    cli(args=argv if argv is not None else sys.argv[1:], prog_name="memoryos")

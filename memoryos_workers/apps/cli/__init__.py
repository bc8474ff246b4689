"""The `memoryos` command: one Typer app, its commands in modules by what they are about (`serving`:
servers and workers; `user_data`: import, export, forget, inspect; `operations`: counters, dead letters,
re-embedding, BM25 terms). Commands reach the memory through memoryos_workers.interface (`access`)."""

from __future__ import annotations

import sys

import typer

from memoryos_workers.apps.cli import operations, serving, user_data

cli = typer.Typer(help="MemoryOS workers: memory for chat agents, built in the background.", no_args_is_help=True)
cli.command()(serving.demo)
cli.command()(serving.mcp)
cli.command()(serving.serve)
cli.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(serving.worker)
cli.command()(serving.beat)
cli.command("import")(user_data.import_)
cli.command()(user_data.export)
cli.command()(user_data.forget)
cli.command()(user_data.inspect)
cli.command()(operations.reembed)
cli.command("bm25-terms")(operations.bm25_terms)
cli.command()(operations.stats)
cli.add_typer(operations.dead_cli, name="dead-letters")


def main(argv: list[str] | None = None) -> None:
    from schemas.settings_errors import exit_on_settings_error

    with exit_on_settings_error():  # one line naming the MEMORYOS_ variable, not a traceback
        cli(args=argv if argv is not None else sys.argv[1:], prog_name="memoryos")

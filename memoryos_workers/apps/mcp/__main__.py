"""`python -m memoryos_workers.apps.mcp`: the MCP server without the `memoryos` console script."""

from __future__ import annotations

import argparse

from memoryos_workers.apps import mcp
from memoryos_workers.apps.mcp.server import DEFAULT_HOST, DEFAULT_PORT, TRANSPORTS, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m memoryos_workers.apps.mcp", description=(mcp.__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--transport", choices=TRANSPORTS, default="stdio")
    parser.add_argument("--host", default=DEFAULT_HOST, help="HTTP only.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTP only.")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = parser.parse_args(argv)
    serve(args.transport, args.host, args.port, args.log_level)


if __name__ == "__main__":
    main()

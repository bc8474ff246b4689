"""A fake OpenAI-compatible chat-completions server, standalone (manual use, benchmarks).

``python -m memoryos_workers.testing.fake_llm --port 0 --latency 0.5`` prints the base URL on stdout,
serves until SIGINT/SIGTERM, then prints its counters as JSON on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from memoryos_workers.testing.fake_llm.server import FakeLLM


def main(argv: list[str] | None = None) -> int:
    """Run until SIGINT/SIGTERM; print the base URL first so scripts can read it from stdout."""
    parser = argparse.ArgumentParser(
        prog="python -m memoryos_workers.testing.fake_llm", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--error-status", type=int, default=500)
    parser.add_argument("--timeout-rate", type=float, default=0.0)
    parser.add_argument("--hang-seconds", type=float, default=60.0)
    parser.add_argument("--malformed-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reject-json-schema", action="store_true")
    parser.add_argument("--reject-schema-keyword", action="append", default=[],
                        help="refuse a json_schema using this keyword (e.g. maxLength), as OpenAI's strict mode does")
    parser.add_argument("--no-auth", action="store_true", help="accept requests without a Bearer token")
    parser.add_argument("--context-tokens", type=int, default=None, help="refuse longer prompts (400)")
    parser.add_argument("--stream-tokens-per-s", type=float, default=None, help="the model's speed")
    parser.add_argument("--no-stream-usage", action="store_true", help="no usage chunk, as llama.cpp")
    parser.add_argument("--stall-after-tokens", type=int, default=None)
    parser.add_argument("--truncate-at-tokens", type=int, default=None)
    parser.add_argument("--generic", action="store_true", help="arbitrary schema-valid JSON for every schema")
    parser.add_argument("-v", "--verbose", action="store_true", help="log requests to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr)

    llm = FakeLLM(
        port=args.port,
        model=args.model,
        latency=args.latency,
        error_rate=args.error_rate,
        error_status=args.error_status,
        timeout_rate=args.timeout_rate,
        hang_seconds=args.hang_seconds,
        malformed_rate=args.malformed_rate,
        seed=args.seed,
        reject_json_schema=args.reject_json_schema,
        reject_schema_keywords=tuple(args.reject_schema_keyword),
        require_auth=not args.no_auth,
        context_tokens=args.context_tokens,
        stream_tokens_per_s=args.stream_tokens_per_s,
        stream_usage=not args.no_stream_usage,
        stall_after_tokens=args.stall_after_tokens,
        truncate_at_tokens=args.truncate_at_tokens,
        generic=args.generic,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with llm:
        print(llm.base_url, flush=True)
        try:
            while not done.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        print(json.dumps(llm.stats()), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

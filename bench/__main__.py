"""`python -m bench [part] [options]`: run one benchmark part, or all of them in order, then regenerate
BENCHMARKS.md from every saved result. `python -m bench report` only regenerates BENCHMARKS.md."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from types import ModuleType

from bench.parts import ORDER, load_part


# In the order they run; each module has add_arguments(parser), run(**options) and markdown(result).
def _first_line(module: ModuleType) -> str:
    """The part's one-line help; "%" escaped, as argparse formats help strings ("50% of ingest" broke --help)."""
    return (module.__doc__ or "").strip().splitlines()[0].replace("%", "%%") if module.__doc__ else ""


def main(argv: list[str] | None = None) -> int:
    parts = {name: module for name in ORDER if (module := load_part(name)) is not None}
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Without a part, every part runs with its defaults (the suite: under 15 minutes on 2 cores). "
               "`python -m bench <part> --help` lists a part's options.",
    )
    parser.add_argument("--skip", default="",
                        help=f"with no part: parts to leave out, comma-separated ({', '.join(ORDER)})")
    sub = parser.add_subparsers(dest="part", metavar="{" + ",".join([*parts, "report"]) + "}")
    for name, module in parts.items():
        module.add_arguments(sub.add_parser(name, help=_first_line(module)))
    sub.add_parser("report", help="only regenerate BENCHMARKS.md from bench/results/*.json")
    args = parser.parse_args(argv)

    from . import report

    if args.part == "report":
        print(f"wrote {report.write()}")
        return 0
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(ORDER)
    if unknown:
        parser.error(f"--skip: unknown part(s) {', '.join(sorted(unknown))}")
    if args.part:
        selected = [args.part]
        options = {k: v for k, v in vars(args).items() if k not in ("part", "skip")}
    else:
        selected = [name for name in parts if name not in skip]
        options = {}
    started = time.perf_counter()
    failed = []
    for name in selected:
        t0 = time.perf_counter()
        print(f"\n=== bench {name} ===", flush=True)
        try:
            parts[name].run(**options)
        except KeyboardInterrupt:
            raise
        except Exception:  # noqa: BLE001 - report it, run the other parts, fail at the end
            traceback.print_exc()
            failed.append(name)
        print(f"=== bench {name}: {time.perf_counter() - t0:.0f} s ===", flush=True)
    print(f"\nwrote {report.write()}")
    elapsed = time.perf_counter() - started
    print(f"total elapsed: {elapsed // 60:.0f} min {elapsed % 60:.0f} s for {', '.join(selected)}", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)} (their sections keep the previous results)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m bench [part] [options]`: run one benchmark part, or all of them."""

from __future__ import annotations

import argparse

from . import llm_cost, publish, retrieval

PARTS = {"publish": publish, "llm_cost": llm_cost, "retrieval": retrieval}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="part")
    for name, module in PARTS.items():
        module.add_arguments(sub.add_parser(name, help=(module.__doc__ or "").splitlines()[0]))
    args = parser.parse_args()
    parts = [args.part] if args.part else list(PARTS)
    for name in parts:
        options = {k: v for k, v in vars(args).items() if k != "part"} if args.part else {}
        PARTS[name].run(**options)


if __name__ == "__main__":
    main()

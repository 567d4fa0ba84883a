"""``python -m hivemem``: the command line."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hivemem",
        description="Keep a Python process inside a memory budget, and prove it with measurements.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="bloat this process, then bring it under a target with optimize()")
    demo.add_argument("--target", default="90MB", help="target RSS, e.g. 90MB (default: %(default)s)")
    demo.add_argument(
        "--size", default="600MB", help="how much to allocate before freeing (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from hivemem._errors import InvalidSize
    from hivemem._sizes import parse_size

    try:
        target, size = parse_size(args.target), parse_size(args.size)
    except InvalidSize as exc:
        print(f"hivemem: error: {exc}", file=sys.stderr)
        return 2
    from hivemem._demo import main as demo_main

    return demo_main(target_mb=target / 2**20, total_mb=max(1, size // 2**20))


if __name__ == "__main__":
    sys.exit(main())

"""`python -m tinycoco build`: data/tiny_coco from COCO128 (also run by `python -m controller data build`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tinycoco.building import build
from tinycoco.errors import DatasetError
from tinycoco.selection import DEFAULT_SEED

EXIT_BAD_INPUT = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinycoco", description="the tiny person dataset")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("build", help="build data/tiny_coco from COCO128")
    command.add_argument("--source", default=None, help="coco128.zip URL, a local zip or folder "
                         "(default: $TP4_COCO128_SOURCE, else the official URL)")
    command.add_argument("--out", type=Path, default=Path("data/tiny_coco"))
    command.add_argument("--seed", type=int, default=DEFAULT_SEED,
                         help=f"the split's seed (default {DEFAULT_SEED}: COCO128 splits 40/10/10)")
    args = parser.parse_args(argv)
    try:
        built = build(source=args.source, out_dir=args.out, seed=args.seed)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(built.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())

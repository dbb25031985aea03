"""Build the offline demo datasets: edges2photo, photo2winter and styles from photos shipped in the scikit-image
and scikit-learn wheels (the `demo` extra), and generated label → facade pairs (facades)."""

import argparse
import sys
from dataclasses import asdict

from jobs._run import examples, run
from pipelines.demo_data import build_demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="i2i data demo", description=__doc__, epilog=examples("i2i data demo --out data/demo"),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="local folder to write the four datasets into")
    parser.add_argument("--tile-size", type=int, default=64, help="tile size in pixels (64-128 recommended)")
    parser.add_argument("--max-per-photo", type=int, default=60, help="at most this many tiles per photo")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return run(lambda: asdict(build_demo(args.out, tile_size=args.tile_size,
                                         max_per_photo=args.max_per_photo, seed=args.seed)))


if __name__ == "__main__":
    sys.exit(main())

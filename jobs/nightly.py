"""The whole pipeline: shard → train → evaluate → register → promote (each step resumes or is a no-op when done).

    ray job submit --working-dir . -- python -m jobs.nightly --config jobs/configs/quickstart.yaml
"""

import argparse
import sys

from jobs._run import run
from pipelines.config import add_config_args, load_config
from pipelines.nightly import run_nightly


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="i2i nightly", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    args = parser.parse_args(argv)
    return run(lambda: run_nightly(load_config(args.config, args.overrides)))


if __name__ == "__main__":
    sys.exit(main())

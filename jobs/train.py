"""Train the configured model on Ray Train from the shards (resumes a re-submitted run).

    ray job submit --working-dir . -- python -m jobs.train --config jobs/configs/quickstart.yaml
"""

import argparse
import sys
from dataclasses import asdict

from jobs._run import run
from pipelines.config import add_config_args, load_config
from pipelines.nightly import step_train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="i2i train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    args = parser.parse_args(argv)

    return run(lambda: asdict(step_train(load_config(args.config, args.overrides))))


if __name__ == "__main__":
    sys.exit(main())

"""Train the configured model on Ray Train from the shards (resumes a re-submitted run). A config with a `shard`
section whose shards do not exist yet is sharded first.

    ray job submit --working-dir . -- python -m jobs.train --config jobs/configs/quickstart.yaml
"""

import sys
from dataclasses import asdict

from jobs._run import job_parser, run
from pipelines.config import load_config
from pipelines.nightly import step_train


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("i2i train", __doc__)
    args = parser.parse_args(argv)

    return run(lambda: asdict(step_train(load_config(args.config, args.overrides), shard_missing=True)))


if __name__ == "__main__":
    sys.exit(main())

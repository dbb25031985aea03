"""The whole pipeline: shard → train → evaluate → register → promote (each step resumes or is a no-op when done).

    ray job submit --working-dir . -- python -m jobs.nightly --config jobs/configs/quickstart.yaml
"""

import sys

from jobs._run import job_parser, run
from pipelines.config import load_config
from pipelines.nightly import run_nightly


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("i2i nightly", __doc__)
    args = parser.parse_args(argv)
    return run(lambda: run_nightly(load_config(args.config, args.overrides)))


if __name__ == "__main__":
    sys.exit(main())

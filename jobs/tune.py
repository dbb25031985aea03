"""Tune loss weights (any λ by name, lr, batch size, epochs) with Ray Tune (ASHA or PBT); resumable.

    ray job submit --working-dir . -- python -m jobs.tune --config jobs/configs/tune_pix2pix_demo.yaml
"""

import sys
from dataclasses import asdict

from jobs._run import job_parser, run
from pipelines.config import load_config
from pipelines.nightly import step_tune


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("i2i tune", __doc__)
    args = parser.parse_args(argv)
    return run(lambda: asdict(step_tune(load_config(args.config, args.overrides))))


if __name__ == "__main__":
    sys.exit(main())

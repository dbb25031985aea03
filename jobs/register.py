"""Register this config's finished, evaluated training run in the MLflow registry (alias challenger).

    ray job submit --working-dir . -- python -m jobs.register --config jobs/configs/quickstart.yaml
"""

import sys
from dataclasses import asdict

from jobs._run import job_parser, run
from pipelines.config import load_config
from pipelines.nightly import finished, step_register, stored_evaluation


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("i2i register", __doc__)
    args = parser.parse_args(argv)

    def step() -> dict:
        cfg = load_config(args.config, args.overrides)
        return asdict(step_register(cfg, finished(cfg), stored_evaluation(cfg)))

    return run(step)


if __name__ == "__main__":
    sys.exit(main())

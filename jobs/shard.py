"""Shard a dataset into WebDataset tars + manifest.

    ray job submit --working-dir . -- python -m jobs.shard --config jobs/configs/quickstart.yaml
"""

import sys

from jobs._run import job_parser, run
from pipelines.config import load_config
from pipelines.shard import result_dict, run_shard


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("i2i shard", __doc__)
    args = parser.parse_args(argv)

    def step() -> dict:
        cfg = load_config(args.config, args.overrides)
        shard_cfg = cfg.require("shard")
        return result_dict(run_shard(shard_cfg, ray_config=cfg.ray, resolved_config=cfg.model_dump()))

    return run(step)


if __name__ == "__main__":
    sys.exit(main())

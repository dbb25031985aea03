"""Train the configured model on Ray Train from the shards (resumes a re-submitted run).

    ray job submit --working-dir . -- python -m jobs.train --config jobs/configs/quickstart.yaml
"""

import argparse
import sys
from dataclasses import asdict

from jobs._run import run
from pipelines.config import add_config_args, load_config
from pipelines.train import run_train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="i2i train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    args = parser.parse_args(argv)

    def step() -> dict:
        cfg = load_config(args.config, args.overrides)
        return asdict(run_train(model=cfg.model.name, model_args=cfg.model.args, loss_weights=cfg.loss_weights,
                                train=cfg.require("train"), mlflow=cfg.mlflow, ray_config=cfg.ray,
                                resolved_config=cfg.model_dump()))

    return run(step)


if __name__ == "__main__":
    sys.exit(main())

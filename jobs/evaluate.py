"""Evaluate a model on the val/test shards (default: this config's finished training run), log to MLflow.

    ray job submit --working-dir . -- python -m jobs.evaluate --config jobs/configs/quickstart.yaml [--model URI]
"""

import argparse
import sys
from dataclasses import asdict

from jobs._run import run
from pipelines.config import add_config_args, load_config
from pipelines.evaluate import run_evaluate
from pipelines.nightly import step_evaluate, finished


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="i2i evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--model", help="checkpoint folder or models:/NAME@alias (default: the config's run)")
    args = parser.parse_args(argv)

    def step() -> dict:
        cfg = load_config(args.config, args.overrides)
        if args.model:
            return asdict(run_evaluate(model_uri=args.model, dataset=cfg.require("train").dataset,
                                       cfg=cfg.evaluate, mlflow=cfg.mlflow))
        return asdict(step_evaluate(cfg, finished(cfg)))

    return run(step)


if __name__ == "__main__":
    sys.exit(main())

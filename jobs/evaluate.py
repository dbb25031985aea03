"""Evaluate a model on the val/test shards (default: this config's finished training run), log to MLflow.

    ray job submit --working-dir . -- python -m jobs.evaluate --config jobs/configs/quickstart.yaml [--model URI]
"""

import argparse
import sys
from dataclasses import asdict

from jobs._run import run
from pipelines import storage
from pipelines.config import add_config_args, load_config
from pipelines.errors import I2IError
from pipelines.evaluate import run_evaluate
from pipelines.train import finished_run, plan_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="i2i evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--model", help="checkpoint folder or models:/NAME@alias (default: the config's run)")
    args = parser.parse_args(argv)

    def step() -> dict:
        cfg = load_config(args.config, args.overrides)
        done = None if args.model else finished_run(**cfg.train_args())
        if not args.model and done is None:
            raise I2IError("this config's training run has not finished: run `i2i train` first, or pass --model")
        _, run_dir, _ = plan_run(**cfg.train_args())
        return asdict(run_evaluate(model_uri=args.model or done.checkpoint, dataset=cfg.require("train").dataset,
                                   cfg=cfg.evaluate, mlflow=cfg.mlflow, mlflow_run_id=done and done.mlflow_run_id,
                                   output=None if args.model else storage.join(run_dir, "eval.json")))

    return run(step)


if __name__ == "__main__":
    sys.exit(main())

"""Evaluate a model on the val/test shards (default: this config's finished training run), log to MLflow.

    ray job submit --working-dir . -- python -m jobs.evaluate --config jobs/configs/quickstart.yaml [--model URI]
"""

import sys
from dataclasses import asdict

from jobs._run import job_parser, run
from pipelines.config import load_config
from pipelines.evaluate import run_evaluate
from pipelines.nightly import step_evaluate, finished


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("i2i evaluate", __doc__)
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

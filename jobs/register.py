"""Register this config's finished training run in the MLflow registry (alias challenger).

    ray job submit --working-dir . -- python -m jobs.register --config jobs/configs/quickstart.yaml
"""

import argparse
import json
import sys
from dataclasses import asdict

from jobs._run import run
from pipelines import storage
from pipelines.config import add_config_args, load_config
from pipelines.errors import I2IError
from pipelines.evaluate import EvalResult
from pipelines.register import run_register
from pipelines.train import finished_run, plan_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="i2i register", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    args = parser.parse_args(argv)

    def step() -> dict:
        cfg = load_config(args.config, args.overrides)
        done = finished_run(**cfg.train_args())
        if done is None:
            raise I2IError("this config's training run has not finished: run `i2i train` first")
        _, run_dir, manifest = plan_run(**cfg.train_args())
        eval_uri = storage.join(run_dir, "eval.json")
        if not storage.exists(eval_uri):
            raise I2IError("the run has not been evaluated: run `i2i evaluate` first (the gate needs its metrics)")
        ev = json.loads(storage.read_bytes(eval_uri))
        evaluation = EvalResult(**{k: ev[k] for k in ("metrics", "dataset", "dataset_id", "split", "samples")})
        return asdict(run_register(checkpoint=done.checkpoint, model=cfg.model.name, dataset=manifest.dataset,
                                   mlflow=cfg.mlflow, run_id=done.mlflow_run_id, eval_result=evaluation,
                                   cfg=cfg.registry, tags={"i2i.run_name": done.run_name}))

    return run(step)


if __name__ == "__main__":
    sys.exit(main())

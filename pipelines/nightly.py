"""The pipeline's steps on one ``PipelineConfig``, and the nightly run that chains them:
shard (a no-op when the manifest matches) → train (resumes; a no-op when done) → evaluate → register (once per
training run) → promote. The step functions only wire configs into the step modules; the jobs call them."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict

from pipelines import storage, tracking
from pipelines.config import PipelineConfig
from pipelines.errors import I2IError
from pipelines.evaluate import EvalResult, run_evaluate
from pipelines.promote import PromoteResult, run_promote
from pipelines.register import RegisterResult, registered_name, run_register
from pipelines.shard import result_dict, run_shard
from pipelines.train import TrainResult, finished_run, plan_run, run_train
from pipelines.tune import TuneResult, run_tune

log = logging.getLogger(__name__)
EVAL_FILE = "eval.json"


def step_train(cfg: PipelineConfig, tags: dict[str, str] | None = None) -> TrainResult:
    return run_train(**cfg.train_args(), mlflow=cfg.mlflow, ray_config=cfg.ray, resolved_config=cfg.model_dump(),
                     tags=tags)


def step_tune(cfg: PipelineConfig) -> TuneResult:
    return run_tune(**cfg.tune_args())


def finished(cfg: PipelineConfig) -> TrainResult:
    done = finished_run(**cfg.train_args())
    if done is None:
        raise I2IError("this config's training run has not finished: run `i2i train` (or `i2i nightly`) first")
    return done


def step_evaluate(cfg: PipelineConfig, train: TrainResult) -> EvalResult:
    """Evaluate a finished run's final checkpoint; the result is logged to its MLflow run and kept beside it."""
    _, run_dir, _ = plan_run(**cfg.train_args())
    return run_evaluate(model_uri=train.checkpoint, dataset=cfg.require("train").dataset, cfg=cfg.evaluate,
                        mlflow=cfg.mlflow, mlflow_run_id=train.mlflow_run_id, output=storage.join(run_dir, EVAL_FILE))


def stored_evaluation(cfg: PipelineConfig) -> EvalResult:
    _, run_dir, _ = plan_run(**cfg.train_args())
    uri = storage.join(run_dir, EVAL_FILE)
    if not storage.exists(uri):
        raise I2IError("the run has not been evaluated: run `i2i evaluate` first (the promotion gate needs it)")
    ev = json.loads(storage.read_bytes(uri))
    return EvalResult(**{k: ev[k] for k in ("metrics", "dataset", "dataset_id", "split", "samples")})


def step_register(cfg: PipelineConfig, train: TrainResult, evaluation: EvalResult,
                  tags: dict[str, str] | None = None) -> RegisterResult:
    """Register the run's model once: a version already created from this MLflow run is reused."""
    _, _, manifest = plan_run(**cfg.train_args())
    name = registered_name(cfg.model.name, manifest.dataset, cfg.registry)
    found = tracking.client(cfg.mlflow).search_model_versions(f"name='{name}' and run_id='{train.mlflow_run_id}'")
    if found:
        mv = max(found, key=lambda v: int(v.version))
        log.info("%s version %s was already registered from run %s", name, mv.version, train.run_name)
        return RegisterResult(name=name, version=str(mv.version), model_uri=f"models:/{name}/{mv.version}")
    return run_register(checkpoint=train.checkpoint, model=cfg.model.name, dataset=manifest.dataset,
                        mlflow=cfg.mlflow, run_id=train.mlflow_run_id, eval_result=evaluation, cfg=cfg.registry,
                        tags={"i2i.run_name": train.run_name, "i2i.dataset_id": manifest.id, **(tags or {})})


def step_promote(cfg: PipelineConfig, name: str | None = None, version: str | None = None) -> PromoteResult:
    if name is None:
        _, _, manifest = plan_run(**cfg.train_args())
        name = registered_name(cfg.model.name, manifest.dataset, cfg.registry)
    return run_promote(name=name, mlflow=cfg.mlflow, cfg=cfg.promote, eval_cfg=cfg.evaluate, version=version)


def run_nightly(cfg: PipelineConfig) -> dict:
    summary: dict = {}
    if cfg.shard is not None:
        summary["shard"] = result_dict(run_shard(cfg.shard, ray_config=cfg.ray, resolved_config=cfg.model_dump()))
    tags: dict[str, str] = {}
    if cfg.tune.enabled:  # tune first; the final model trains with the best values, and says who chose them
        tuned = step_tune(cfg)
        summary["tune"] = asdict(tuned)
        cfg = cfg.with_values(tuned.best_config)
        tags = {"i2i.tune_run": tuned.name, "i2i.tune_mlflow_run": tuned.mlflow_run_id,
                "i2i.tuned_values": json.dumps(tuned.best_config)}
    train = step_train(cfg, tags)
    evaluation = step_evaluate(cfg, train)
    reg = step_register(cfg, train, evaluation, tags)
    promo = step_promote(cfg, reg.name, reg.version)
    summary.update(train=asdict(train), evaluate=asdict(evaluation), register=asdict(reg), promote=asdict(promo))
    summary["champion_uri"] = f"models:/{reg.name}@{cfg.promote.champion_alias}"
    summary["mlflow_ui"] = f"mlflow ui --backend-store-uri {cfg.mlflow.uri()}"
    return summary

"""The nightly pipeline: shard (a no-op when the manifest matches) → train (resumes / no-op when done) →
evaluate → register (once per training run) → promote. It only calls the steps."""

from __future__ import annotations

import logging
from dataclasses import asdict

from pipelines import storage, tracking
from pipelines.config import PipelineConfig
from pipelines.evaluate import run_evaluate
from pipelines.promote import run_promote
from pipelines.register import RegisterResult, registered_name, run_register
from pipelines.shard import result_dict, run_shard
from pipelines.train import plan_run, run_train

log = logging.getLogger(__name__)


def _registered_version(cfg: PipelineConfig, name: str, run_id: str) -> RegisterResult | None:
    c = tracking.client(cfg.mlflow)
    found = c.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if not found:
        return None
    mv = max(found, key=lambda v: int(v.version))
    return RegisterResult(name=name, version=str(mv.version), model_uri=f"models:/{name}/{mv.version}")


def run_nightly(cfg: PipelineConfig) -> dict:
    summary: dict = {}
    if cfg.shard is not None:
        summary["shard"] = result_dict(run_shard(cfg.shard, ray_config=cfg.ray, resolved_config=cfg.model_dump()))
    train = run_train(**cfg.train_args(), mlflow=cfg.mlflow, ray_config=cfg.ray, resolved_config=cfg.model_dump())
    summary["train"] = asdict(train)
    _, run_dir, manifest = plan_run(**cfg.train_args())
    dataset = cfg.evaluate.dataset or cfg.train.dataset
    evaluation = run_evaluate(model_uri=train.checkpoint, dataset=dataset, cfg=cfg.evaluate, mlflow=cfg.mlflow,
                              mlflow_run_id=train.mlflow_run_id, output=storage.join(run_dir, "eval.json"))
    summary["evaluate"] = asdict(evaluation)
    name = registered_name(cfg.model.name, manifest.dataset, cfg.registry)
    reg = _registered_version(cfg, name, train.mlflow_run_id) or run_register(
        checkpoint=train.checkpoint, model=cfg.model.name, dataset=manifest.dataset, mlflow=cfg.mlflow,
        run_id=train.mlflow_run_id, eval_result=evaluation, cfg=cfg.registry,
        tags={"i2i.run_name": train.run_name, "i2i.dataset_id": manifest.id})
    summary["register"] = asdict(reg)
    promo = run_promote(name=name, mlflow=cfg.mlflow, cfg=cfg.promote, eval_cfg=cfg.evaluate, version=reg.version)
    summary["promote"] = asdict(promo)
    summary["champion_uri"] = f"models:/{name}@{cfg.promote.champion_alias}"
    summary["mlflow_ui"] = f"mlflow ui --backend-store-uri {cfg.mlflow.uri()}"
    return summary

"""Evaluate a generator on the val (or test) shards: L1, PSNR, SSIM, and FID/KID via torchmetrics.

FID/KID use a pluggable feature network (``metrics.feature_net``): the standard Inception weights from a configured
path or the ``$TORCH_HOME`` cache (never downloaded at run time; a clear error names the file), or the seeded
``tiny`` net for tests and offline smoke runs. Translations are seeded, so two models evaluated with the same config
see the same noise and the same images (the promotion gate compares them on equal terms).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from pydantic import Field

from i2i_models.base import I2IModel
from pipelines import metrics, storage, tracking
from pipelines.data import read_split, to_model_batch
from pipelines.manifest import read_manifest
from pipelines.schema import StrictModel

log = logging.getLogger(__name__)
LOWER_IS_BETTER = {"l1": True, "fid": True, "kid": True, "psnr": False, "ssim": False}


class EvaluateConfig(StrictModel):
    dataset: str | None = None  # shards to evaluate on; None: the training dataset
    split: str | None = None  # None: "val", else "test"
    batch_size: int = Field(default=16, gt=0)
    fid: bool = True  # also FID and KID
    feature_net: Literal["inception", "tiny"] = "inception"
    inception_weights: str | None = None  # path to weights-inception-2015-12-05-6726825d.pth
    kid_subset_size: int = Field(default=1000, gt=1)
    seed: int = 0


@dataclass(frozen=True)
class EvalResult:
    metrics: dict[str, float]
    dataset: str
    dataset_id: str
    split: str
    samples: int


def pick_split(dataset: str, split: str | None) -> str:
    m = read_manifest(dataset)
    if split:
        return split
    for s in ("val", "test"):
        if s in m.splits:
            return s
    raise ValueError(f"dataset '{m.dataset}' has neither a val nor a test split; set evaluate.split")


@torch.no_grad()
def evaluate_model(model: I2IModel, dataset: str, cfg: EvaluateConfig) -> EvalResult:
    """Metrics of ``model`` on one split (paired data: translation vs target)."""
    split = pick_split(dataset, cfg.split)
    data = read_split(dataset, split)
    size = model.config.image_size
    dist = metrics.Distribution(cfg.feature_net, cfg.inception_weights, cfg.kid_subset_size) if cfg.fid else None
    torch.manual_seed(cfg.seed)
    sums, n = torch.zeros(4), 0
    for raw in data.dataset.iter_torch_batches(batch_size=cfg.batch_size):
        batch = to_model_batch(raw, crop_size=size, center=True)
        fake = model.translate(batch["input"])
        sums += metrics.paired_sums(fake, batch["target"])
        if dist:
            dist.update(batch["target"], real=True)
            dist.update(fake, real=False)
        n += fake.shape[0]
    if n == 0:
        raise ValueError(f"split '{split}' of {dataset} yielded no samples")
    result = metrics.paired_means(sums)
    if dist and n > 1:
        result.update(dist.compute())
    if skipped := data.skipped():
        log.warning("%d samples skipped while evaluating (undecodable), e.g. %s", len(skipped), skipped[0])
    return EvalResult(metrics=result, dataset=storage.absolute(dataset), dataset_id=data.manifest.id, split=split, samples=n)


def run_evaluate(*, model_uri: str, dataset: str, cfg: EvaluateConfig, mlflow: tracking.MlflowConfig,
                 mlflow_run_id: str | None = None, output: str | None = None) -> EvalResult:
    """Evaluate the model at ``model_uri`` (a checkpoint folder or ``models:/…``), write JSON, log to MLflow."""
    from pipelines.register import load_model

    result = evaluate_model(load_model(model_uri, mlflow), cfg.dataset or dataset, cfg)
    log.info("evaluated %s on %s/%s (%d images): %s", model_uri, result.dataset, result.split, result.samples,
             result.metrics)
    if output:
        storage.write_bytes(output, json.dumps({"model": model_uri, **asdict(result)}, indent=1).encode())
    if mlflow_run_id:
        c = tracking.client(mlflow)
        for k, v in result.metrics.items():
            c.log_metric(mlflow_run_id, f"eval_{k}", v)
        c.set_tag(mlflow_run_id, "eval.dataset_id", result.dataset_id)
        c.set_tag(mlflow_run_id, "eval.split", result.split)
    return result

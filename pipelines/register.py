"""Log a trained generator to MLflow, register it as ``i2i-<model>-<dataset>`` and alias it ``challenger``;
load any model URI back (checkpoint folder, ``models:/NAME@alias``, ``runs:/…``)."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from i2i_models.base import I2IModel
from pipelines import storage, tracking
from pipelines.schema import StrictModel

log = logging.getLogger(__name__)


class RegisterConfig(StrictModel):
    name: str | None = None  # registered model name; None: i2i-<model>-<dataset>
    alias: str = "challenger"


@dataclass(frozen=True)
class RegisterResult:
    name: str
    version: str
    model_uri: str  # models:/NAME/VERSION


def registered_name(model: str, dataset: str, cfg: RegisterConfig | None = None) -> str:
    return (cfg.name if cfg and cfg.name else None) or f"i2i-{model}-{dataset}"


def load_model(uri: str, mlflow_cfg: tracking.MlflowConfig | None = None) -> I2IModel:
    """A model from a checkpoint folder (local or object storage) or an MLflow model URI."""
    if uri.startswith(("models:/", "runs:/", "mlflow-artifacts:/")):
        from mlflow import pytorch as mlflow_pytorch

        if mlflow_cfg is not None:
            tracking.client(mlflow_cfg)
        return mlflow_pytorch.load_model(uri, map_location="cpu")
    fs, path = storage.resolve(uri)
    if type(fs).__name__ == "LocalFileSystem":
        return I2IModel.from_pretrained(path)
    import pyarrow.fs as pafs

    with tempfile.TemporaryDirectory() as d, storage.errors("download checkpoint", uri):
        pafs.copy_files(path, d, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        return I2IModel.from_pretrained(d)


def run_register(*, checkpoint: str, model: str, dataset: str, mlflow: tracking.MlflowConfig, run_id: str,
                 eval_result=None, cfg: RegisterConfig | None = None, tags: dict[str, str] | None = None
                 ) -> RegisterResult:
    """Log the checkpoint's inference networks to the training run and register a new version (alias challenger)."""
    import mlflow as mlf
    from mlflow import pytorch as mlflow_pytorch

    import i2i_models

    cfg = cfg or RegisterConfig()
    name = registered_name(model, dataset, cfg)
    exported = load_model(checkpoint).export()
    size = exported.config.image_size
    channels = getattr(exported.config, "in_channels", 3)  # StarGAN v2 is RGB only
    example = np.random.default_rng(0).uniform(-1, 1, (2, channels, size, size)).astype("float32")
    c = tracking.client(mlflow)
    with mlf.start_run(run_id=run_id):
        info = mlflow_pytorch.log_model(
            exported, name="model", input_example=example, serialization_format="pickle",
            code_paths=[os.path.dirname(i2i_models.__file__)], registered_model_name=name,
            pip_requirements=["torch", "torchvision"],
        )
    version = str(info.registered_model_version)
    version_tags = {"i2i.checkpoint": checkpoint, "i2i.model": model, "i2i.dataset": dataset, **(tags or {})}
    if eval_result is not None:
        from pipelines.evaluate import eval_tags

        version_tags.update(eval_tags(eval_result))
    for k, v in version_tags.items():
        c.set_model_version_tag(name, version, k, str(v))
    c.set_registered_model_alias(name, cfg.alias, version)
    log.info("registered %s version %s (alias %s)", name, version, cfg.alias)
    return RegisterResult(name=name, version=version, model_uri=f"models:/{name}/{version}")

"""Register a trained generator in MLflow as ``i2i-<model>-<dataset>`` (alias ``challenger``), and load any model URI
back — a checkpoint folder, ``models:/NAME/VERSION``, ``models:/NAME@alias``, ``runs:/…`` — without unpickling.

What is registered is an ``mlflow.pyfunc`` model logged as *models from code* (``pipelines/pyfunc_model.py``): its
artifact ``pretrained`` is the ``save_pretrained`` folder (``config.json`` + tensors), so
``mlflow.pyfunc.load_model("models:/…@champion")`` works in a fresh process. The project itself never runs code from
the registry or the artifact store: :func:`load_model` downloads the artifacts and reads only ``pretrained/``
(JSON + ``torch.load(weights_only=True)``); anything else — a pickled model, a weights file holding objects — is
refused with a :class:`RegistryError`.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import tempfile
from dataclasses import dataclass

import numpy as np
import torch

from i2i_models.base import CONFIG_FILE, I2IModel
from pipelines import storage, tracking
from pipelines.errors import RegistryError
from pipelines.schema import StrictModel

log = logging.getLogger(__name__)
PYFUNC_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyfunc_model.py")
PRETRAINED_ARTIFACT = "pretrained"  # = pyfunc_model.PRETRAINED_ARTIFACT (that file is standalone: no import)
FORMAT = "i2i-pretrained-v1"  # the logged model's metadata ``i2i_format``
REGISTRY_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")


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


def _from_pretrained(folder: str, uri: str) -> I2IModel:
    """``I2IModel.from_pretrained`` with its failures said as what they are (the weights load is tensors-only)."""
    try:
        return I2IModel.from_pretrained(folder)
    except pickle.UnpicklingError as err:
        raise RegistryError(f"{storage.redact(uri)}: its weights file holds more than tensors; refused (i2i loads "
                            f"weights with torch.load(weights_only=True): {str(err).splitlines()[0]})") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise RegistryError(f"{storage.redact(uri)}: {CONFIG_FILE} does not describe an i2i model "
                            f"({type(err).__name__}: {err})") from None


def _load_registered(uri: str, mlflow_cfg: tracking.MlflowConfig | None) -> I2IModel:
    import mlflow
    from mlflow.exceptions import MlflowException

    if mlflow_cfg is not None:
        tracking.client(mlflow_cfg)
    with tempfile.TemporaryDirectory() as d:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=d)
        except MlflowException as err:
            raise RegistryError(f"cannot download {storage.redact(uri)} from MLflow: "
                                f"{storage.redact(str(err).splitlines()[0])}") from None
        pretrained = os.path.join(local, "artifacts", PRETRAINED_ARTIFACT)
        if not os.path.isfile(os.path.join(pretrained, CONFIG_FILE)):
            raise RegistryError(
                f"{storage.redact(uri)} is not an i2i model (its artifacts have no {PRETRAINED_ARTIFACT}/"
                f"{CONFIG_FILE}): refused — i2i never unpickles a registry artifact. Register it with `i2i register` "
                "(versions logged before the pickle-free format must be registered again from their checkpoint)")
        return _from_pretrained(pretrained, uri)


def load_model(uri: str, mlflow_cfg: tracking.MlflowConfig | None = None) -> I2IModel:
    """A model from a checkpoint folder (local or object storage) or an MLflow model URI; never unpickles."""
    if uri.startswith(REGISTRY_SCHEMES):
        return _load_registered(uri, mlflow_cfg)
    fs, path = storage.resolve(uri)
    if type(fs).__name__ == "LocalFileSystem":
        return _from_pretrained(path, uri)
    import pyarrow.fs as pafs

    with tempfile.TemporaryDirectory() as d, storage.errors("download checkpoint", uri):
        pafs.copy_files(path, d, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        return _from_pretrained(d, uri)


def _params(model: I2IModel) -> dict:
    """The pyfunc's inference params (their defaults): the family's ``translate`` conditions."""
    params: dict = {}
    if model.data_mode == "unpaired" or model.semi_paired:  # two generators: a2b and b2a (Triangle GAN's too)
        params["direction"] = "a2b"
    if model.data_mode == "labeled":
        params["domain"] = 0
    if model.multimodal:
        params["seed"] = 0
    if hasattr(model.config, "translate_steps"):  # CoGAN's latent search
        params["steps"] = model.config.translate_steps
    return params


def _log(exported: I2IModel, name: str, run_id: str) -> str:
    """Log ``exported`` to the run as a models-from-code pyfunc and register it; the new version."""
    import mlflow
    from mlflow.models import infer_signature

    import i2i_models

    size = exported.config.image_size
    channels = getattr(exported.config, "in_channels", getattr(exported.config, "channels", 3))
    example = np.random.default_rng(0).uniform(-1, 1, (1, channels, size, size)).astype("float32")
    params = _params(exported)
    with torch.no_grad():
        if exported.data_mode == "single" and not exported.encodes:  # a generator only: seeds in, samples out
            example = np.arange(2, dtype=np.int64)
            output = torch.cat([exported.sample(1, seed=int(s)) for s in example]).float().numpy()
        else:
            output = exported.translate(torch.from_numpy(example), **params).float().numpy()
    with tempfile.TemporaryDirectory() as d, mlflow.start_run(run_id=run_id):
        folder = os.path.join(d, PRETRAINED_ARTIFACT)  # MLflow keeps the folder's name: artifacts/pretrained/
        exported.save_pretrained(folder)
        info = mlflow.pyfunc.log_model(
            name="model", python_model=PYFUNC_FILE, artifacts={PRETRAINED_ARTIFACT: folder},
            code_paths=[os.path.dirname(i2i_models.__file__)], signature=infer_signature(example, output, params),
            registered_model_name=name, pip_requirements=["torch", "torchvision", "numpy"],
            metadata={"i2i_format": FORMAT, "i2i_model": exported.name},
        )
    return str(info.registered_model_version)


def version_from_run(c, name: str, run_id: str):
    """The newest version of ``name`` created from the MLflow run ``run_id``, or None."""
    found = c.search_model_versions(f"name={tracking.quote(name)} and run_id={tracking.quote(run_id)}")
    return max(found, key=lambda v: int(v.version)) if found else None


def run_register(*, checkpoint: str, model: str, dataset: str, mlflow: tracking.MlflowConfig, run_id: str,
                 eval_result=None, cfg: RegisterConfig | None = None, tags: dict[str, str] | None = None
                 ) -> RegisterResult:
    """Register the checkpoint's inference networks from the training run ``run_id`` — once per run, and
    convergent: a re-run finds the version that run created and (re)applies its tags, then the alias (a crash
    between creating a version and tagging it is repaired; an alias never points at an untagged version)."""
    from pipelines.evaluate import eval_tags

    cfg = cfg or RegisterConfig()
    name = registered_name(model, dataset, cfg)
    c = tracking.client(mlflow)
    found = version_from_run(c, name, run_id)
    if found is not None:
        version = str(found.version)
        log.info("%s version %s was already registered from run %s: checking its tags and alias", name, version,
                 run_id)
    else:
        version = _log(load_model(checkpoint).export(), name, run_id)
    version_tags = {"i2i.checkpoint": storage.redact(checkpoint), "i2i.model": model, "i2i.dataset": dataset,
                    "i2i.format": FORMAT, **(tags or {})}
    if eval_result is not None:
        version_tags.update(eval_tags(eval_result))
    current = found.tags if found is not None else {}
    for k, v in version_tags.items():
        if current.get(k) != str(v):
            c.set_model_version_tag(name, version, k, str(v))
    c.set_registered_model_alias(name, cfg.alias, version)
    log.info("registered %s version %s (alias %s)", name, version, cfg.alias)
    return RegisterResult(name=name, version=version, model_uri=f"models:/{name}/{version}")

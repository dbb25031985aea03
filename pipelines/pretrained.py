"""Files a model is built from (``I2IModel.file_config_keys``: DTN's fixed, pretrained f), resolved on the driver and
shipped to the Ray Train workers through object storage.

``model.args.f_source`` is either

* a **TorchScript file** (a local path or an ``s3://`` / ``file://`` URI), or
* a **registered model** (``models:/NAME@alias``, ``models:/NAME/VERSION``, ``runs:/…``) of a family that encodes
  (``ae``, ``vae``, …: ``encodes = True``): its encoder x → code (the code its ``reconstruct`` decodes, i.e. z for
  the AE, μ for the VAE) traced to TorchScript. An alias is pinned to its version first.

Nothing is ever downloaded from outside: a missing file, or a registered model that does not encode, is a
:class:`ConfigError` naming the problem. :func:`ship_files` (driver) stores the resolved TorchScript under
``<train.storage_path>/pretrained/<key>-<sha256[:16]>.pt`` — storage every node reads — and returns
``{key: uri}`` for the loop config; :func:`fetch_files` (each worker) copies those into a local cache and returns
``{key: local path}``. The model then keeps its own copy: checkpoints and the registered model carry f
(``save_pretrained``), so serving never needs these files.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile

import torch
from torch import nn

from i2i_models.base import I2IModel, unwrap
from i2i_models.registry import get_model_class
from pipelines import storage, tracking
from pipelines.errors import ConfigError, I2IError

log = logging.getLogger(__name__)


class _Encoder(nn.Module):
    """x → the code a family that encodes decodes: its ``reconstruct(x, E, G)`` with G the identity."""

    def __init__(self, model: I2IModel):
        super().__init__()
        self.E = unwrap(model.nets["E"])
        self._reconstruct = model.reconstruct  # a bound method, not a submodule: G's weights stay out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._reconstruct(x, self.E, nn.Identity())


def encoder_script(uri: str, mlflow: tracking.MlflowConfig | None = None) -> tuple[bytes, str]:
    """(TorchScript bytes of the encoder of the registered model ``uri``, the pinned URI it came from)."""
    from i2i_models.dtn import quiet_jit
    from pipelines.register import load_model
    from pipelines.translate import resolve_model_uri

    pinned = resolve_model_uri(uri, mlflow)
    model = load_model(pinned, mlflow).eval()
    if not (model.encodes and "E" in model.nets):
        raise ConfigError(f"{uri} is a '{model.name}' model, which does not encode images: f must be the encoder of a "
                          "registered model that encodes (ae, vae, …) or a TorchScript file")
    c = model.config
    example = torch.zeros(1, getattr(c, "channels", 3), c.image_size, c.image_size)
    buf = io.BytesIO()
    with torch.no_grad(), quiet_jit():
        torch.jit.save(torch.jit.trace(_Encoder(model).eval(), example), buf)
    return buf.getvalue(), pinned


def _script_file(uri: str) -> bytes:
    if not storage.exists(uri):
        raise ConfigError(f"f_source {storage.describe(uri)}: no such file (a TorchScript file of the fixed f, or "
                          "models:/NAME@alias of a registered model that encodes; nothing is downloaded)")
    data = storage.read_bytes(uri)
    from i2i_models.dtn import _load_script

    try:
        _load_script(data)
    except RuntimeError as err:
        raise ConfigError(f"f_source {storage.describe(uri)} is not a TorchScript file "
                          f"({str(err).splitlines()[0]})") from None
    return data


def resolve_file(value: str, mlflow: tracking.MlflowConfig | None = None) -> tuple[bytes, str]:
    """(TorchScript bytes, where they came from) of one file config value: a file or a registered model."""
    from pipelines.register import REGISTRY_SCHEMES

    if value.startswith(REGISTRY_SCHEMES):
        return encoder_script(value, mlflow)
    return _script_file(value), storage.describe(value)


def ship_files(model: str, model_args: dict, storage_path: str,
               mlflow: tracking.MlflowConfig | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """On the driver: each file config key of ``model`` set in ``model_args`` resolved and stored content-addressed
    under ``<storage_path>/pretrained/``. (``{key: stored URI}`` for the workers, ``{key: "origin sha256:…"}``
    provenance for the run's tags.)"""
    shipped, origin = {}, {}
    for key in get_model_class(model).file_config_keys:
        value = model_args.get(key)
        if value is None:
            continue
        data, source = resolve_file(str(value), mlflow)
        digest = hashlib.sha256(data).hexdigest()
        uri = storage.join(storage.absolute(storage_path), "pretrained", f"{key}-{digest[:16]}.pt")
        if not storage.exists(uri):
            storage.write_bytes(uri, data)
        shipped[key], origin[key] = uri, f"{source} sha256:{digest}"
        log.info("%s of model '%s': %s -> %s", key, model, source, storage.describe(uri))
    return shipped, origin


def fetch_files(files: dict[str, str]) -> dict[str, str]:
    """On a worker: the shipped files as local paths (a per-user cache; names are content hashes)."""
    local = {}
    cache = os.path.join(tempfile.gettempdir(), f"i2i-pretrained-{os.getuid()}")
    for key, uri in files.items():
        fs, path = storage.resolve(uri)
        if type(fs).__name__ == "LocalFileSystem" and os.path.isfile(path):
            local[key] = path
            continue
        os.makedirs(cache, exist_ok=True)
        target = os.path.join(cache, os.path.basename(path))
        if not os.path.isfile(target):
            try:
                data = storage.read_bytes(uri)
            except I2IError as err:
                raise ConfigError(f"{key}: the driver's copy {storage.describe(uri)} cannot be read here: "
                                  f"{err}") from None
            tmp = f"{target}.{os.getpid()}.tmp"
            with open(tmp, "wb") as out:
                out.write(data)
            os.replace(tmp, target)
        local[key] = target
    return local

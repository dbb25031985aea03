"""``register_model`` / ``get_model`` / ``list_models``, in the manner of torchvision's ``models/_api.py``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from i2i_models.base import I2IModel

_MODELS: dict[str, type[I2IModel]] = {}


def register_model(name: str) -> Callable[[type[I2IModel]], type[I2IModel]]:
    def wrap(cls: type[I2IModel]) -> type[I2IModel]:
        if name in _MODELS:
            raise ValueError(f"model '{name}' is already registered")
        cls.name = name
        _MODELS[name] = cls
        return cls

    return wrap


def list_models() -> list[str]:
    _import_families()
    return sorted(_MODELS)


def get_model_class(name: str) -> type[I2IModel]:
    _import_families()
    if name not in _MODELS:
        raise KeyError(f"unknown model '{name}'; registered models: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def get_model(name: str, *, loss_weights: Mapping[str, float] | None = None, **config: Any) -> I2IModel:
    """Build a registered family. With no overrides: the paper's standard configuration."""
    cls = get_model_class(name)
    valid = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(config) - valid)
    if unknown:
        raise KeyError(f"unknown config key(s) {unknown} for model '{name}'; valid keys: {', '.join(sorted(valid))}")
    return cls(cls.Config(**config), loss_weights=loss_weights)


def _import_families() -> None:
    from i2i_models import (  # noqa: F401  (registers on import)
        aae, ae, ali, avb, cogan, cyclegan, discogan_dualgan, dtn, gan, munit, pix2pix, stargan_v2, triangle_gan,
        unit, vae, vae_gan,
    )

"""Normalisation layers by name, as the authors' ``get_norm_layer``."""

from __future__ import annotations

import functools
from typing import Literal

from torch import nn

Norm = Literal["batch", "instance", "none"]


def norm_layer(kind: Norm):
    """A constructor ``f(num_features) -> nn.Module``; BatchNorm tracks stats, InstanceNorm has no affine/stats."""
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if kind == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if kind == "none":
        return lambda _num_features: nn.Identity()
    raise ValueError(f"unknown norm '{kind}'; choose batch, instance or none")


def conv_bias(kind: Norm) -> bool:
    """Convs followed by BatchNorm need no bias (BN's shift replaces it); the others keep theirs."""
    return kind != "batch"

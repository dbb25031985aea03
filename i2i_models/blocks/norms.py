"""Normalisation layers by name, as the authors' ``get_norm_layer``; batch norm with a per-image test mode."""

from __future__ import annotations

import functools
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Norm = Literal["batch", "instance", "none"]


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same parameters, buffers and state-dict keys) with one more test-time mode.

    With ``per_sample`` set and the module in eval mode, each image is normalised by its own mean and (biased)
    variance over H×W and then scaled by the layer's affine γ, β: exactly what batch norm in train mode computes for a
    batch of one image — the pix2pix authors' test (``test.py``: batch size 1, no ``--eval``) — but for any batch, so
    an image's output does not depend on the others in its batch. The running buffers are neither read nor written.
    """

    per_sample: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_sample and not self.training:
            return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)
        return super().forward(x)


def norm_layer(kind: Norm):
    """A constructor ``f(num_features) -> nn.Module``; BatchNorm tracks stats, InstanceNorm has no affine/stats."""
    if kind == "batch":
        return functools.partial(BatchNorm2d, affine=True, track_running_stats=True)
    if kind == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if kind == "none":
        return lambda _num_features: nn.Identity()
    raise ValueError(f"unknown norm '{kind}'; choose batch, instance or none")


def conv_bias(kind: Norm) -> bool:
    """Convs followed by BatchNorm need no bias (BN's shift replaces it); the others keep theirs."""
    return kind != "batch"

"""Padded conv blocks, residual blocks and the per-sample layer norm of the UNIT / MUNIT networks.

A :class:`ConvBlock` is ``pad → conv (padding 0) → norm → activation``: the padding is its own layer so that reflect
padding (the authors' ``pad_type: reflect``) needs no support from the conv. Norms by name: ``"in"`` InstanceNorm2d
without affine parameters, ``"ln"`` :class:`LayerNorm2d`, ``"none"``; other norms (AdaIN) are passed as a
constructor ``f(num_features) -> nn.Module``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

PadType = Literal["reflect", "replicate", "zero"]
Activation = Literal["relu", "lrelu", "tanh", "none"]
BlockNorm = Literal["in", "ln", "none"] | Callable[[int], nn.Module]


class LayerNorm2d(nn.Module):
    """Layer norm over (C, H, W) of each sample, with a per-channel affine map (MUNIT's decoder upsampling blocks):
    y = γ_c · (x − mean(x)) / (std(x) + ε) + β_c, std unbiased; γ ~ U[0, 1), β = 0 at init, as the authors."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.rand(num_features))
        self.beta = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        mean = flat.mean(1).view(-1, 1, 1, 1)
        std = flat.std(1).view(-1, 1, 1, 1)
        return (x - mean) / (std + self.eps) * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


def make_norm(norm: BlockNorm, channels: int) -> nn.Module:
    if callable(norm):
        return norm(channels)
    if norm == "in":
        return nn.InstanceNorm2d(channels)  # affine=False, no running statistics: no parameters, no buffers
    if norm == "ln":
        return LayerNorm2d(channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{norm}'; choose in, ln, none or a constructor")


def make_activation(activation: Activation) -> nn.Module:
    layers = {"relu": lambda: nn.ReLU(inplace=True), "lrelu": lambda: nn.LeakyReLU(0.2, inplace=True),
              "tanh": nn.Tanh, "none": nn.Identity}
    if activation not in layers:
        raise ValueError(f"unknown activation '{activation}'; choose {', '.join(layers)}")
    return layers[activation]()


def make_pad(pad_type: PadType, padding: int) -> nn.Module:
    pads = {"reflect": nn.ReflectionPad2d, "replicate": nn.ReplicationPad2d, "zero": nn.ZeroPad2d}
    if pad_type not in pads:
        raise ValueError(f"unknown pad_type '{pad_type}'; choose {', '.join(pads)}")
    return pads[pad_type](padding)


class ConvBlock(nn.Sequential):
    """pad → Conv2d(kernel, stride, padding 0, bias) → norm → activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, padding: int, *,
                 norm: BlockNorm = "none", activation: Activation = "relu", pad_type: PadType = "reflect"):
        super().__init__(make_pad(pad_type, padding), nn.Conv2d(in_channels, out_channels, kernel, stride),
                         make_norm(norm, out_channels), make_activation(activation))


class ResBlock(nn.Module):
    """x + (conv3 → norm → act → conv3 → norm)(x), channels kept."""

    def __init__(self, dim: int, *, norm: BlockNorm = "in", activation: Activation = "relu",
                 pad_type: PadType = "reflect"):
        super().__init__()
        self.model = nn.Sequential(
            ConvBlock(dim, dim, 3, 1, 1, norm=norm, activation=activation, pad_type=pad_type),
            ConvBlock(dim, dim, 3, 1, 1, norm=norm, activation="none", pad_type=pad_type),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.model(x)


def res_blocks(n: int, dim: int, **kwargs) -> nn.Sequential:
    return nn.Sequential(*[ResBlock(dim, **kwargs) for _ in range(n)])

"""ResNet generator (Johnson et al. 2016, "Perceptual Losses for Real-Time Style Transfer"), as CycleGAN uses it.

Layout of the authors' ``ResnetGenerator`` (CycleGAN appendix 7.2, ``c7s1-64, d128, d256, R256×n, u128, u64,
c7s1-3``): a 7×7 stem on a reflection-padded input, ``n_downsampling`` = 2 stride-2 3×3 convolutions (ngf → 4·ngf),
``n_blocks`` residual blocks at 4·ngf, two stride-2 3×3 transposed convolutions back to ngf, and a 7×7 output conv
with tanh. Every conv is followed by the norm and ReLU except the last. Reflection padding "to reduce artifacts"
(paper §4 / appendix). The authors use 9 blocks for 256 px training images (resnet_9blocks, 11,378,179 parameters
at ngf 64, 3 → 3 channels, instance norm) and 6 for 128 px (resnet_6blocks, 7,837,699).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from i2i_models.blocks.norms import Norm, conv_bias, norm_layer

Padding = Literal["reflect", "replicate", "zero"]


def _padded_conv3x3(dim: int, padding: Padding, bias: bool) -> list[nn.Module]:
    """A 3×3 conv that keeps the spatial size, with the padding done by a layer (reflect/replicate) or by the conv."""
    if padding == "zero":
        return [nn.Conv2d(dim, dim, 3, padding=1, bias=bias)]
    pad = {"reflect": nn.ReflectionPad2d, "replicate": nn.ReplicationPad2d}.get(padding)
    if pad is None:
        raise ValueError(f"unknown padding '{padding}'; choose reflect, replicate or zero")
    return [pad(1), nn.Conv2d(dim, dim, 3, padding=0, bias=bias)]


class ResnetBlock(nn.Module):
    """x + [pad, conv3×3, norm, ReLU, (dropout 0.5), pad, conv3×3, norm](x) — no ReLU after the sum."""

    def __init__(self, dim: int, *, norm: Norm = "instance", dropout: bool = False, padding: Padding = "reflect"):
        super().__init__()
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        layers = [*_padded_conv3x3(dim, padding, bias), make_norm(dim), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [*_padded_conv3x3(dim, padding, bias), make_norm(dim)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    def __init__(self, input_nc: int, output_nc: int, *, ngf: int = 64, n_blocks: int = 9, norm: Norm = "instance",
                 dropout: bool = False, padding: Padding = "reflect", n_downsampling: int = 2):
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be ≥ 0, got {n_blocks}")
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, padding=0, bias=bias),
                                   make_norm(ngf), nn.ReLU(True)]
        for i in range(n_downsampling):  # ngf·2^i → ngf·2^(i+1), H/2
            c = ngf * 2**i
            layers += [nn.Conv2d(c, c * 2, 3, stride=2, padding=1, bias=bias), make_norm(c * 2), nn.ReLU(True)]
        width = ngf * 2**n_downsampling
        layers += [ResnetBlock(width, norm=norm, dropout=dropout, padding=padding) for _ in range(n_blocks)]
        for i in range(n_downsampling):  # back up: ngf·2^(n−i) → half, 2H (output_padding restores even sizes)
            c = ngf * 2 ** (n_downsampling - i)
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                       make_norm(c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

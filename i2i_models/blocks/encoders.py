"""Content and style encoders of UNIT (Liu et al. 2017) and MUNIT (Huang et al. 2018, §4 and Fig. 3).

``ContentEncoder``: conv7 (instance norm) → ``n_downsample`` × conv4 stride 2 (instance norm, channels doubled) →
``n_res`` residual blocks (instance norm). UNIT's encoder and MUNIT's content encoder are this network; at dim 64,
2 downsamplings and 4 residual blocks it has 5,385,856 parameters and maps (N, 3, H, W) to (N, 256, H/4, W/4).

``StyleEncoder``: conv7 → 2 × conv4 stride 2 (channels doubled) → ``n_downsample − 2`` × conv4 stride 2 (channels
kept) → global average pool → 1×1 conv to ``style_dim``. No normalisation: instance norm would remove the
feature means and variances that carry the style. At dim 64, 4 downsamplings, style_dim 8: 2,764,936 parameters;
output (N, style_dim, 1, 1).
"""

from __future__ import annotations

import torch
from torch import nn

from i2i_models.blocks.conv_blocks import Activation, ConvBlock, PadType, res_blocks


class ContentEncoder(nn.Module):
    def __init__(self, in_channels: int, *, dim: int = 64, n_downsample: int = 2, n_res: int = 4,
                 activation: Activation = "relu", pad_type: PadType = "reflect"):
        super().__init__()
        kw = dict(norm="in", activation=activation, pad_type=pad_type)
        layers: list[nn.Module] = [ConvBlock(in_channels, dim, 7, 1, 3, **kw)]
        for _ in range(n_downsample):
            layers.append(ConvBlock(dim, dim * 2, 4, 2, 1, **kw))
            dim *= 2
        layers.append(res_blocks(n_res, dim, **kw))
        self.model = nn.Sequential(*layers)
        self.out_channels = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class StyleEncoder(nn.Module):
    def __init__(self, in_channels: int, style_dim: int, *, dim: int = 64, n_downsample: int = 4,
                 activation: Activation = "relu", pad_type: PadType = "reflect"):
        super().__init__()
        kw = dict(norm="none", activation=activation, pad_type=pad_type)
        layers: list[nn.Module] = [ConvBlock(in_channels, dim, 7, 1, 3, **kw)]
        for i in range(n_downsample):
            out = dim * 2 if i < 2 else dim  # the first two double the channels, the rest keep them
            layers.append(ConvBlock(dim, out, 4, 2, 1, **kw))
            dim = out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, style_dim, 1, 1, 0)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

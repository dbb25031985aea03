"""The UNIT / MUNIT decoder, adaptive instance normalisation and the MLP that produces its parameters.

``Decoder``: ``n_res`` residual blocks (instance norm in UNIT, AdaIN in MUNIT) → ``n_upsample`` × (nearest
upsample ×2 → conv5, channels halved, layer norm) → conv7 → tanh. At 256 input channels, 4 residual blocks and 2
upsamplings it has 5,754,627 parameters (AdaIN and instance norm have none of their own).

AdaIN (MUNIT eq. 7): AdaIN(z, γ, β) = γ · (z − μ(z)) / σ(z) + β, with μ, σ per sample and channel and (γ, β)
produced from the style code by :class:`MLP` (style_dim → mlp_dim → mlp_dim → 2·Σ channels of the AdaIN layers;
1,120,768 parameters at style_dim 8, mlp_dim 256 and the standard decoder's 8 AdaIN layers of 256 channels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from i2i_models.blocks.conv_blocks import Activation, BlockNorm, ConvBlock, PadType, make_activation, res_blocks


class AdaptiveInstanceNorm2d(nn.Module):
    """Instance norm whose affine (γ, β), one pair per sample, is set from outside before each forward."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.gamma: torch.Tensor | None = None  # (N, C)
        self.beta: torch.Tensor | None = None  # (N, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gamma is None or self.beta is None:
            raise RuntimeError("AdaIN parameters are not set: run the decoder with its style parameters")
        x_hat = F.instance_norm(x, eps=self.eps)
        return x_hat * self.gamma[:, :, None, None].to(x_hat.dtype) + self.beta[:, :, None, None].to(x_hat.dtype)


class Decoder(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, *, n_upsample: int = 2, n_res: int = 4,
                 res_norm: BlockNorm = "in", activation: Activation = "relu", pad_type: PadType = "reflect"):
        super().__init__()
        dim = in_channels
        layers: list[nn.Module] = [res_blocks(n_res, dim, norm=res_norm, activation=activation, pad_type=pad_type)]
        for _ in range(n_upsample):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                       ConvBlock(dim, dim // 2, 5, 1, 2, norm="ln", activation=activation, pad_type=pad_type)]
            dim //= 2
        layers.append(ConvBlock(dim, out_channels, 7, 1, 3, norm="none", activation="tanh", pad_type=pad_type))
        self.model = nn.Sequential(*layers)

    def adain_layers(self) -> list[AdaptiveInstanceNorm2d]:
        return [m for m in self.modules() if isinstance(m, AdaptiveInstanceNorm2d)]

    def num_adain_params(self) -> int:
        return sum(2 * m.num_features for m in self.adain_layers())

    def forward(self, x: torch.Tensor, adain_params: torch.Tensor | None = None) -> torch.Tensor:
        """``adain_params`` (N, num_adain_params): for each AdaIN layer in order, its β (C values) then its γ."""
        layers = self.adain_layers()
        if layers and adain_params is None:
            raise ValueError("this decoder has AdaIN layers: pass adain_params")
        offset = 0
        for m in layers:
            c = m.num_features
            m.beta, m.gamma = adain_params[:, offset:offset + c], adain_params[:, offset + c:offset + 2 * c]
            offset += 2 * c
        try:
            return self.model(x)
        finally:
            for m in layers:  # no reference to this step's graph outlives the call
                m.beta = m.gamma = None


class MLP(nn.Module):
    """Linear → act, (n_layers − 2) × (Linear → act), Linear: style code (N, style_dim, 1, 1) → (N, out_dim)."""

    def __init__(self, in_dim: int, out_dim: int, *, dim: int = 256, n_layers: int = 3,
                 activation: Activation = "relu"):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_dim, dim), make_activation(activation)]
        for _ in range(n_layers - 2):
            layers += [nn.Linear(dim, dim), make_activation(activation)]
        layers.append(nn.Linear(dim, out_dim))
        self.model = nn.Sequential(*layers)

    def forward(self, style: torch.Tensor) -> torch.Tensor:
        return self.model(style.flatten(1))

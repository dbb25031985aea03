"""StarGAN v2 networks (Choi et al., CVPR 2020, appendix A; authors' code clovaai/stargan-v2 core/model.py).

Written from the paper's architecture tables; the parameter counts of the authors' networks pin every layer:

* ``ResBlk``      pre-activation residual block, optional InstanceNorm (affine) and 2×2 average-pool downsampling,
                  a 1×1 conv (no bias) on the shortcut when the width changes; output (shortcut + residual)/√2.
* ``AdaIN``       (1 + γ)·IN(x) + β with (γ, β) = Linear(s) — the style enters the generator only here.
* ``AdainResBlk`` the decoder block: AdaIN → LeakyReLU → (nearest 2× upsample) → conv, twice. With a high-pass
                  weight w_hpf > 0 the shortcut is dropped (the face skip connections carry the identity instead).
* ``Generator``   from_rgb → ``repeat`` downsampling ResBlks + 2 bottleneck ResBlks (IN) → the mirror AdainResBlks →
                  IN, LeakyReLU, 1×1 to RGB. ``repeat`` = log2(img_size) − 4 (+1 when w_hpf > 0).
* ``MappingNetwork`` z → 4 shared Linear+ReLU layers → one 4-layer head per domain → s (style_dim).
* ``StyleEncoder`` / ``MultiTaskDiscriminator``: one shared trunk (log2(img_size) − 2 downsampling ResBlks, no
                  norm, then LeakyReLU, 4×4 conv, LeakyReLU), then a per-domain Linear style head (E) or a 1×1 conv
                  with one real/fake logit per domain (D). Every head is evaluated and the one for ``y`` is picked,
                  so every parameter is in the graph (needed by DDP).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _width(img_size: int, base_dim: int | None) -> int:
    return base_dim if base_dim is not None else 2**14 // img_size  # the authors': 64 channels at 256 px


def _levels(img_size: int) -> int:
    if img_size < 32 or img_size & (img_size - 1):
        raise ValueError(f"img_size must be a power of two ≥ 32, got {img_size}")
    return int(math.log2(img_size))


def _pick(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``out[i, y[i]]`` for (N, num_domains, ...) outputs."""
    return out[torch.arange(y.size(0), device=y.device), y]


class ResBlk(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, *, normalize: bool = False, downsample: bool = False):
        super().__init__()
        self.normalize, self.downsample = normalize, downsample
        self.actv = nn.LeakyReLU(0.2)
        self.conv1 = nn.Conv2d(dim_in, dim_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        if normalize:
            self.norm1 = nn.InstanceNorm2d(dim_in, affine=True)
            self.norm2 = nn.InstanceNorm2d(dim_in, affine=True)
        self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False) if dim_in != dim_out else None

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv1x1 is not None:
            x = self.conv1x1(x)
        return F.avg_pool2d(x, 2) if self.downsample else x

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.actv(self.norm1(x) if self.normalize else x))
        if self.downsample:
            x = F.avg_pool2d(x, 2)
        return self.conv2(self.actv(self.norm2(x) if self.normalize else x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self._shortcut(x) + self._residual(x)) / math.sqrt(2)  # unit variance


class AdaIN(nn.Module):
    def __init__(self, style_dim: int, num_features: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(num_features, affine=False)
        self.fc = nn.Linear(style_dim, num_features * 2)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.fc(s)[:, :, None, None].chunk(2, dim=1)  # (N, C, 1, 1) each
        return (1 + gamma) * self.norm(x) + beta


class AdainResBlk(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, style_dim: int, *, w_hpf: float = 0.0, upsample: bool = False):
        super().__init__()
        self.w_hpf, self.upsample = w_hpf, upsample
        self.actv = nn.LeakyReLU(0.2)
        self.conv1 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, 1, 1)
        self.norm1 = AdaIN(style_dim, dim_in)
        self.norm2 = AdaIN(style_dim, dim_out)
        self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False) if dim_in != dim_out else None

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv1x1(x) if self.conv1x1 is not None else x

    def _residual(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        x = self.actv(self.norm1(x, s))
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv2(self.actv(self.norm2(self.conv1(x), s)))

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        out = self._residual(x, s)
        return out if self.w_hpf > 0 else (out + self._shortcut(x)) / math.sqrt(2)


class HighPass(nn.Module):
    """Depthwise 3×3 Laplacian-like high-pass filter, scaled by 1 / w_hpf (no parameters)."""

    def __init__(self, w_hpf: float):
        super().__init__()
        k = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, 8.0, -1.0], [-1.0, -1.0, -1.0]]) / w_hpf
        self.register_buffer("kernel", k, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.size(1)
        return F.conv2d(x, self.kernel.to(x.dtype).expand(c, 1, 3, 3), padding=1, groups=c)


class Generator(nn.Module):
    def __init__(self, img_size: int = 256, style_dim: int = 64, max_conv_dim: int = 512, w_hpf: float = 0.0,
                 base_dim: int | None = None):
        super().__init__()
        dim_in = _width(img_size, base_dim)
        self.from_rgb = nn.Conv2d(3, dim_in, 3, 1, 1)
        self.encode, self.decode = nn.ModuleList(), nn.ModuleList()
        self.to_rgb = nn.Sequential(nn.InstanceNorm2d(dim_in, affine=True), nn.LeakyReLU(0.2),
                                    nn.Conv2d(dim_in, 3, 1, 1, 0))
        repeat = _levels(img_size) - 4 + (1 if w_hpf > 0 else 0)
        dim_out = dim_in
        for _ in range(repeat):  # down/up-sampling levels, decoder built outside-in
            dim_out = min(dim_in * 2, max_conv_dim)
            self.encode.append(ResBlk(dim_in, dim_out, normalize=True, downsample=True))
            self.decode.insert(0, AdainResBlk(dim_out, dim_in, style_dim, w_hpf=w_hpf, upsample=True))
            dim_in = dim_out
        for _ in range(2):  # bottleneck
            self.encode.append(ResBlk(dim_out, dim_out, normalize=True))
            self.decode.insert(0, AdainResBlk(dim_out, dim_out, style_dim, w_hpf=w_hpf))
        self.hpf = HighPass(w_hpf) if w_hpf > 0 else None

    def forward(self, x: torch.Tensor, s: torch.Tensor,
                masks: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """``masks`` (w_hpf > 0 only): two face-landmark heatmaps (N, 1, h, w); the high-passed, masked encoder
        features at 1/8, 1/4 and 1/2 resolution are added back to the decoder (mask 0 at 1/8, mask 1 above)."""
        size = x.size(2)
        skips = {size // 8, size // 4, size // 2} if masks is not None else set()
        x, cache = self.from_rgb(x), {}
        for block in self.encode:
            if x.size(2) in skips:
                cache[x.size(2)] = x
            x = block(x)
        for block in self.decode:
            x = block(x, s)
            if x.size(2) in skips:
                mask = masks[0] if x.size(2) == size // 8 else masks[1]
                mask = F.interpolate(mask, size=x.size(2), mode="bilinear")
                x = x + self.hpf(mask * cache[x.size(2)])
        return self.to_rgb(x)


class MappingNetwork(nn.Module):
    def __init__(self, latent_dim: int = 16, style_dim: int = 64, num_domains: int = 2, hidden: int = 512):
        super().__init__()
        shared: list[nn.Module] = [nn.Linear(latent_dim, hidden), nn.ReLU()]
        for _ in range(3):
            shared += [nn.Linear(hidden, hidden), nn.ReLU()]
        self.shared = nn.Sequential(*shared)
        self.unshared = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                          nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, style_dim))
            for _ in range(num_domains))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.shared(z)
        return _pick(torch.stack([head(h) for head in self.unshared], dim=1), y)  # (N, style_dim)


def _trunk(img_size: int, max_conv_dim: int, base_dim: int | None) -> tuple[nn.Sequential, int]:
    """The shared trunk of E and D: an image → (N, dim, 1, 1) feature."""
    dim_in = _width(img_size, base_dim)
    blocks: list[nn.Module] = [nn.Conv2d(3, dim_in, 3, 1, 1)]
    dim_out = dim_in
    for _ in range(_levels(img_size) - 2):  # down to 4×4
        dim_out = min(dim_in * 2, max_conv_dim)
        blocks.append(ResBlk(dim_in, dim_out, downsample=True))
        dim_in = dim_out
    blocks += [nn.LeakyReLU(0.2), nn.Conv2d(dim_out, dim_out, 4, 1, 0), nn.LeakyReLU(0.2)]  # 4×4 → 1×1
    return nn.Sequential(*blocks), dim_out


class StyleEncoder(nn.Module):
    def __init__(self, img_size: int = 256, style_dim: int = 64, num_domains: int = 2, max_conv_dim: int = 512,
                 base_dim: int | None = None):
        super().__init__()
        self.shared, dim = _trunk(img_size, max_conv_dim, base_dim)
        self.unshared = nn.ModuleList(nn.Linear(dim, style_dim) for _ in range(num_domains))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.shared(x).flatten(1)
        return _pick(torch.stack([head(h) for head in self.unshared], dim=1), y)  # (N, style_dim)


class MultiTaskDiscriminator(nn.Module):
    def __init__(self, img_size: int = 256, num_domains: int = 2, max_conv_dim: int = 512,
                 base_dim: int | None = None):
        super().__init__()
        trunk, dim = _trunk(img_size, max_conv_dim, base_dim)
        self.main = nn.Sequential(*trunk, nn.Conv2d(dim, num_domains, 1, 1, 0))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _pick(self.main(x).flatten(1), y)  # (N,) logit of "real image of domain y[i]"

"""DCGAN-style networks (Radford, Metz, Chintala, ICLR 2016) shared by the single-domain families: ae, vae, gan,
vae_gan, aae, avb, ali.

The layout is the one of the reference PyTorch DCGAN (pytorch/examples ``dcgan/main.py``), generalised over the image
size: ``n = log2(image_size) − 2`` stride-2 stages between 4×4 and ``image_size`` (4 at 64 px, 3 at 32 px, 2 at
16 px); channels double (D, encoder) or halve (G) per stage, from / to ``ngf`` = ``ndf`` = 64. Convs have no bias
(batch norm's shift replaces it; the output conv of the standard D has none either), 4×4 kernels, stride 2, padding 1.

* :class:`DCGANGenerator` z (N, nz) → ConvT 4×4 stride 1 to ngf·2^(n−1) × 4×4 → (n − 1) × [ConvT 4×4 stride 2, BN,
  ReLU] → ConvT 4×4 stride 2 to ``channels`` → tanh. nz 100, ngf 64, 64 px: 3,576,704 parameters.
* :class:`DCGANTrunk` x → Conv 4×4 stride 2 to ndf, LeakyReLU 0.2 (no BN on the first layer) → (n − 1) × [Conv 4×4
  stride 2, BN, LeakyReLU 0.2] → (N, ndf·2^(n−1), 4, 4). 2,757,376 parameters at ndf 64, 64 px. With
  ``noise_dim`` > 0, each stage adds a learned linear map of a noise vector ε, per channel, after its conv (the
  noise-input encoder of AVB, following the authors' ``add_linear`` in avb/avb/models/conv0.py).
* :class:`DCGANDiscriminator` trunk → Conv 4×4 stride 1 (valid) to one logit: 2,765,568 parameters at ndf 64, 64 px.
* :class:`DCGANEncoder` trunk → Conv 4×4 stride 1 (valid, with bias) to ``out_features`` (nz for a deterministic
  code, 2·nz for a Gaussian's (μ, log σ²)).
* :class:`MLP` the fully connected networks on codes (AAE's D(z); the z branches of AVB's T(x, z) and ALI's
  D(x, z)).

Initialisation is the DCGAN one, ``blocks.init.init_weights(net, "normal", 0.02)``: conv / linear weights
N(0, 0.02), biases 0, batch-norm weights N(1, 0.02) and biases 0.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def n_stages(image_size: int) -> int:
    """Stride-2 stages between 4×4 and ``image_size``: 4 at 64 px."""
    if image_size < 8 or image_size & (image_size - 1):
        raise ValueError(f"image_size must be a power of two ≥ 8 for the DCGAN networks, got {image_size}")
    return int(math.log2(image_size)) - 2


class DCGANGenerator(nn.Module):
    """z (N, nz) or (N, nz, 1, 1) → image (N, channels, image_size, image_size) in [-1, 1]."""

    def __init__(self, nz: int, channels: int = 3, *, ngf: int = 64, image_size: int = 64):
        super().__init__()
        n = n_stages(image_size)
        ch = ngf * 2 ** (n - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch),
                                   nn.ReLU(True)]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.nz = nz
        self.model = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z.reshape(z.size(0), self.nz, 1, 1))


class DCGANTrunk(nn.Module):
    """The DCGAN discriminator without its output layer: x → (N, out_channels, 4, 4)."""

    def __init__(self, channels: int = 3, *, ndf: int = 64, image_size: int = 64, noise_dim: int = 0):
        super().__init__()
        n = n_stages(image_size)
        self.stages = nn.ModuleList()
        self.noise = nn.ModuleList() if noise_dim else None
        ch_in, ch = channels, ndf
        for i in range(n):
            norm = nn.BatchNorm2d(ch) if i else nn.Identity()  # DCGAN: no batch norm on D's first layer
            self.stages.append(nn.ModuleDict({"conv": nn.Conv2d(ch_in, ch, 4, 2, 1, bias=False), "norm": norm,
                                              "act": nn.LeakyReLU(0.2, True)}))
            if self.noise is not None:
                self.noise.append(nn.Linear(noise_dim, ch, bias=False))
            ch_in, ch = ch, ch * 2
        self.out_channels = ch_in

    def features(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The activation after every stage, first to last (the last is the trunk's output)."""
        if (eps is None) != (self.noise is None):
            raise ValueError("a noise-input trunk needs eps (N, noise_dim); a plain one takes none")
        feats = []
        for i, stage in enumerate(self.stages):
            h = stage["conv"](x)
            if self.noise is not None:
                h = h + self.noise[i](eps)[:, :, None, None].to(h.dtype)  # ε enters every stage, per channel
            x = stage["act"](stage["norm"](h))
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        return self.features(x, eps)[-1]


class DCGANDiscriminator(nn.Module):
    """x → one logit per image (N,). ``features(x)`` also returns every trunk stage's activation (VAE-GAN's
    Dis_l)."""

    def __init__(self, channels: int = 3, *, ndf: int = 64, image_size: int = 64):
        super().__init__()
        self.trunk = DCGANTrunk(channels, ndf=ndf, image_size=image_size)
        self.head = nn.Conv2d(self.trunk.out_channels, 1, 4, 1, 0, bias=False)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = self.trunk.features(x)
        return self.head(feats[-1]).flatten(), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x)).flatten()


class DCGANEncoder(nn.Module):
    """x (and ε for a noise-input encoder) → (N, out_features): the DCGAN trunk and a 4×4 valid conv with bias."""

    def __init__(self, channels: int, out_features: int, *, ndf: int = 64, image_size: int = 64,
                 noise_dim: int = 0):
        super().__init__()
        self.trunk = DCGANTrunk(channels, ndf=ndf, image_size=image_size, noise_dim=noise_dim)
        self.head = nn.Conv2d(self.trunk.out_channels, out_features, 4, 1, 0)

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.trunk(x, eps)).flatten(1)


class MLP(nn.Sequential):
    """in_features → ``hidden`` (Linear + activation, optional dropout after each) → Linear to ``out_features``."""

    def __init__(self, in_features: int, hidden: list[int] | tuple[int, ...], out_features: int, *,
                 activation: str = "lrelu", dropout: float = 0.0):
        acts = {"relu": lambda: nn.ReLU(True), "lrelu": lambda: nn.LeakyReLU(0.2, True)}
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_features, width), acts[activation]()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            in_features = width
        layers.append(nn.Linear(in_features, out_features))
        super().__init__(*layers)

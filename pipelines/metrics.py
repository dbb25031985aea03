"""Image metrics: paired (L1, PSNR, SSIM) and distribution (FID, KID) via torchmetrics, plus sample grids.

Images come in as the models produce them, in [-1, 1]; metrics see [0, 1] (``data_range=1``). SSIM is torchmetrics'
11×11 Gaussian window (σ 1.5), which differs slightly from scikit-image's default 7×7 uniform window.

FID/KID use a pluggable feature network:

* ``inception``: the standard TF-ported Inception (``weights-inception-2015-12-05-6726825d.pth``, the file
  torch-fidelity/torchmetrics use) with ``antialias=False`` for parity with the usual FID code. It is loaded from
  ``weights_path`` or the ``$TORCH_HOME/hub/checkpoints`` cache and never downloaded at run time.
* ``tiny``: a small seeded random conv net — the same for every run, for tests and offline smoke runs. Its numbers
  compare runs with each other, not with published FIDs.
"""

from __future__ import annotations

import os

import torch
from torch import nn

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"


def to_unit(x: torch.Tensor) -> torch.Tensor:
    return ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0)


def paired_sums(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """[Σ L1, Σ PSNR, Σ SSIM, n] over a batch (sums, so ranks and batches can be added before dividing)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    f, r = to_unit(fake), to_unit(real)
    l1 = (f - r).abs().mean(dim=(1, 2, 3)) * 2.0  # on the models' [-1, 1] scale, like the training L1
    psnr = peak_signal_noise_ratio(f, r, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(f, r, data_range=1.0, reduction="none")
    return torch.stack([l1.sum(), psnr.sum(), ssim.sum(), torch.tensor(float(f.shape[0]), device=f.device)])


def paired_means(sums: torch.Tensor) -> dict[str, float]:
    n = max(float(sums[3]), 1.0)
    return {"l1": float(sums[0]) / n, "psnr": float(sums[1]) / n, "ssim": float(sums[2]) / n}


class TinyFeatures(nn.Module):
    """Seeded random conv features (uint8 NCHW in, (N, dim) out) — a stand-in Inception for tests."""

    def __init__(self, dim: int = 64, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, dim, 3, 2, 1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())
        for p in self.net.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.2
        self.num_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float() / 255.0)


def inception_weights(weights_path: str | None) -> str:
    candidates = [weights_path] if weights_path else []
    torch_home = os.environ.get("TORCH_HOME", os.path.join(os.path.expanduser("~"), ".cache", "torch"))
    candidates.append(os.path.join(torch_home, "hub", "checkpoints", INCEPTION_FILE))
    for c in candidates:
        if c and os.path.isfile(c):
            return c
    raise FileNotFoundError(
        f"FID/KID need the standard Inception weights '{INCEPTION_FILE}', not found at "
        f"{' or '.join(c for c in candidates if c)}. Download it from {INCEPTION_URL} and set "
        "evaluate.inception_weights (or put it in $TORCH_HOME/hub/checkpoints/), or set evaluate.feature_net=tiny."
    )


def feature_net(kind: str, weights_path: str | None = None) -> nn.Module:
    if kind == "tiny":
        return TinyFeatures()
    if kind == "inception":
        from torchmetrics.image.fid import NoTrainInceptionV3

        return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                  feature_extractor_weights_path=inception_weights(weights_path), antialias=False)
    raise ValueError(f"unknown feature net '{kind}'; choose inception or tiny")


class Distribution:
    """FID + KID accumulated over batches of real and generated images in [-1, 1]."""

    def __init__(self, kind: str = "inception", weights_path: str | None = None, kid_subset_size: int = 1000):
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        self.fid = FrechetInceptionDistance(feature=feature_net(kind, weights_path))
        self.kid = KernelInceptionDistance(feature=feature_net(kind, weights_path), subset_size=kid_subset_size)
        self.n_fake = 0

    def update(self, images: torch.Tensor, real: bool) -> None:
        u8 = (to_unit(images) * 255).round().to(torch.uint8).cpu()
        self.fid.update(u8, real=real)
        self.kid.update(u8, real=real)
        self.n_fake += 0 if real else u8.shape[0]

    def compute(self) -> dict[str, float]:
        self.kid.subset_size = min(self.kid.subset_size, self.n_fake)
        kid_mean, _ = self.kid.compute()
        return {"fid": float(self.fid.compute()), "kid": float(kid_mean)}


def sample_grid(columns: list[torch.Tensor], max_rows: int = 8):
    """A PIL image with one row per sample and one column per tensor (e.g. input | output | target)."""
    from PIL import Image
    from torchvision.utils import make_grid

    rows = min(max_rows, columns[0].shape[0])
    tiles = torch.stack([to_unit(c[i].detach().cpu()) for i in range(rows) for c in columns])
    grid = make_grid(tiles, nrow=len(columns), padding=2, pad_value=1.0)
    return Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8"))

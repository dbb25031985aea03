"""Image metrics: paired (L1, PSNR, SSIM) and distribution (FID, KID) via torchmetrics; LPIPS diversity and the
(conditional) Inception Score of multimodal translations; sample grids.

Images come in as the models produce them, in [-1, 1]; metrics see [0, 1] (``data_range=1``). SSIM is torchmetrics'
11×11 Gaussian window (σ 1.5), which differs slightly from scikit-image's default 7×7 uniform window.

FID/KID use a pluggable feature network:

* ``inception``: the standard TF-ported Inception (``weights-inception-2015-12-05-6726825d.pth``, the file
  torch-fidelity/torchmetrics use) with ``antialias=False`` for parity with the usual FID code. It is loaded from
  ``weights_path`` or the ``$TORCH_HOME/hub/checkpoints`` cache and never downloaded at run time.
* ``tiny``: a small seeded random conv net — the same for every run, for tests and offline smoke runs. Its numbers
  compare runs with each other, not with published FIDs.

LPIPS (Zhang et al., CVPR 2018, v0.1 "alex") is written out here without torchvision: AlexNet ``features`` as a
Sequential with torchvision's layer indices, the backbone weights read from ``alexnet-owt-7be5be79.pth`` (a
configured path or the ``$TORCH_HOME`` cache, never downloaded) and the linear layers from the torchmetrics wheel
(byte-identical to the ``lpips`` package's). ``tiny`` swaps in a seeded random backbone for tests and offline runs.

Conditional IS / IS follow MUNIT's ``test_batch.py``: p(y|x) = softmax of a *domain classifier* (any TorchScript
module mapping images in [-1, 1] to logits); CIS = exp(mean over outputs of KL(p(y|x_out) ‖ p_i(y))) with p_i the
mean prediction over the K outputs of the same input i; IS the same with p(y) over all outputs (no splits).
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from importlib.util import find_spec

import torch
from torch import nn

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision AlexNet_Weights.IMAGENET1K_V1
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"
TINY_DIM, TINY_SEED = 64, 0  # the tiny FID/KID feature net: width and weight seed
TINY_LPIPS_SEED = 0  # the tiny LPIPS backbone's weight seed


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

    def __init__(self, dim: int = TINY_DIM, seed: int = TINY_SEED):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, dim, 3, 2, 1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())
        for p in self.net.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.2
        self.num_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float() / 255.0)


def cached_weights(file: str, url: str, weights_path: str | None, *, needed_by: str, config_key: str,
                   fallback: str) -> str:
    """``weights_path`` if given, else ``$TORCH_HOME/hub/checkpoints/<file>``; never downloads (the error says how)."""
    candidates = [weights_path] if weights_path else []
    torch_home = os.environ.get("TORCH_HOME", os.path.join(os.path.expanduser("~"), ".cache", "torch"))
    candidates.append(os.path.join(torch_home, "hub", "checkpoints", file))
    for c in candidates:
        if c and os.path.isfile(c):
            return c
    raise FileNotFoundError(
        f"{needed_by} need the weights '{file}', not found at {' or '.join(c for c in candidates if c)}. Download it "
        f"from {url} and set evaluate.{config_key} (or put it in $TORCH_HOME/hub/checkpoints/), or set {fallback}."
    )


def inception_weights(weights_path: str | None) -> str:
    return cached_weights(INCEPTION_FILE, INCEPTION_URL, weights_path, needed_by="FID/KID",
                          config_key="inception_weights", fallback="evaluate.feature_net=tiny")


def feature_net(kind: str, weights_path: str | None = None) -> nn.Module:
    if kind == "tiny":
        return TinyFeatures()
    if kind == "inception":
        from torchmetrics.image.fid import NoTrainInceptionV3

        return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                  feature_extractor_weights_path=inception_weights(weights_path), antialias=False)
    raise ValueError(f"unknown feature net '{kind}'; choose inception or tiny")


# --- identities: what a number was measured with (the evaluation fingerprint records them) ----------------------
@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str) -> str:
    """sha256 of a weights file (cached per path, size and mtime: the 95 MB Inception file is hashed once)."""
    st = os.stat(path)
    return _sha256(os.path.abspath(path), st.st_size, st.st_mtime_ns)


def _lpips_lin_file() -> str:
    """LPIPS' linear layers in the torchmetrics wheel (found without importing torchmetrics' image package)."""
    return os.path.join(os.path.dirname(find_spec("torchmetrics").origin), "functional", "image", "lpips_models",
                        "alex.pth")


def feature_net_identity(kind: str, weights_path: str | None = None) -> str:
    """The FID/KID feature network as a string that changes when its numbers would: ``tiny`` and its seed and
    width, or the sha256 of the Inception weights file ``feature_net`` would load."""
    if kind == "tiny":
        return f"tiny:dim={TINY_DIM}:seed={TINY_SEED}"
    if kind == "inception":
        return f"inception:sha256={file_sha256(inception_weights(weights_path))}"
    raise ValueError(f"unknown feature net '{kind}'; choose inception or tiny")


def lpips_identity(backbone: str = "alex", weights_path: str | None = None) -> str:
    """LPIPS as ``lpips_net`` builds it: the backbone (the AlexNet file's sha256, or ``tiny`` and its seed) and the
    sha256 of the linear layers' file."""
    lin = f"lin:sha256={file_sha256(_lpips_lin_file())}"
    if backbone == "tiny":
        return f"tiny:seed={TINY_LPIPS_SEED}:{lin}"
    if backbone == "alex":
        path = cached_weights(ALEXNET_FILE, ALEXNET_URL, weights_path, needed_by="LPIPS",
                              config_key="lpips_weights", fallback="evaluate.lpips_backbone=tiny")
        return f"alex:sha256={file_sha256(path)}:{lin}"
    raise ValueError(f"unknown LPIPS backbone '{backbone}'; choose alex or tiny")


class Distribution:
    """FID + KID accumulated over batches of real and generated images in [-1, 1]."""

    def __init__(self, kind: str = "inception", weights_path: str | None = None, kid_subset_size: int = 1000):
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        # the caller passes every image it measures (train_loop gathers the ranks' itself): no second gather by
        # torchmetrics, which inside a DDP worker would count each rank's images once per rank (FID/KID of duplicated
        # samples, and a KID that differs from rank to rank)
        self.fid = FrechetInceptionDistance(feature=feature_net(kind, weights_path), sync_on_compute=False)
        self.kid = KernelInceptionDistance(feature=feature_net(kind, weights_path), subset_size=kid_subset_size,
                                           sync_on_compute=False)
        self.n_real = self.n_fake = 0

    def update(self, images: torch.Tensor, real: bool) -> None:
        u8 = (to_unit(images) * 255).round().to(torch.uint8).cpu()
        self.fid.update(u8, real=real)
        self.kid.update(u8, real=real)
        if real:
            self.n_real += u8.shape[0]
        else:
            self.n_fake += u8.shape[0]

    def compute(self) -> dict[str, float]:
        self.kid.subset_size = min(self.kid.subset_size, self.n_fake, self.n_real)
        kid_mean, _ = self.kid.compute()
        return {"fid": float(self.fid.compute()), "kid": float(kid_mean)}


# --- LPIPS -----------------------------------------------------------------------------------------------------
def alexnet_features() -> nn.Sequential:
    """torchvision's ``alexnet().features`` (same indices, so its state dict loads): convs at 0, 3, 6, 8, 10."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
    )


class LPIPS(nn.Module):
    """LPIPS v0.1 (alex): Σ_l mean_hw w_l · (φ̂_l(x) − φ̂_l(y))², φ̂_l = AlexNet ReLU tap l, unit-normalised over
    channels. Images (N, 3, H, W) in [-1, 1], H, W ≥ 32 (AlexNet's pooling needs it); returns (N,)."""

    TAPS = (1, 4, 7, 9, 11)  # after the ReLUs: relu1 … relu5

    def __init__(self, features: nn.Sequential, lin_weights: dict[str, torch.Tensor]):
        super().__init__()
        self.features = features[: self.TAPS[-1] + 1]
        self.lins = nn.ParameterList([nn.Parameter(lin_weights[f"lin{i}.model.1.weight"], requires_grad=False)
                                      for i in range(len(self.TAPS))])
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], (x - self.shift) / self.scale
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.TAPS:
                out.append(h / (h.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < 32:
            raise ValueError(f"LPIPS (AlexNet) needs images of at least 32x32, got {tuple(x.shape[-2:])}")
        n = x.shape[0]
        taps = self._taps(torch.cat([x.float(), y.float()]))
        return sum(nn.functional.conv2d((t[:n] - t[n:]).pow(2), w).mean(dim=(1, 2, 3))
                   for t, w in zip(taps, self.lins))


def lpips_net(backbone: str = "alex", weights_path: str | None = None) -> LPIPS:
    """``alex``: ImageNet AlexNet from ``weights_path`` / the cache; ``tiny``: the same layers, seeded random."""
    features = alexnet_features()
    if backbone == "alex":
        path = cached_weights(ALEXNET_FILE, ALEXNET_URL, weights_path, needed_by="LPIPS",
                              config_key="lpips_weights", fallback="evaluate.lpips_backbone=tiny")
        state = torch.load(path, map_location="cpu", weights_only=True)
        features.load_state_dict({k.removeprefix("features."): v for k, v in state.items()
                                  if k.startswith("features.")})
    elif backbone == "tiny":
        g = torch.Generator().manual_seed(TINY_LPIPS_SEED)
        for m in features:
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.data = torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5
                m.bias.data.zero_()
    else:
        raise ValueError(f"unknown LPIPS backbone '{backbone}'; choose alex or tiny")
    return LPIPS(features, torch.load(_lpips_lin_file(), map_location="cpu", weights_only=True))


def diversity_sums(net: LPIPS, outputs: torch.Tensor) -> torch.Tensor:
    """[Σ LPIPS, count] over every pair j < k of the K outputs per input; ``outputs`` is (K, N, C, H, W)."""
    k = outputs.shape[0]
    pairs = [net(outputs[i], outputs[j]) for i in range(k) for j in range(i + 1, k)]
    if not pairs:
        return torch.zeros(2)
    values = torch.cat(pairs)
    return torch.stack([values.sum().cpu(), torch.tensor(float(values.numel()))])


# --- (conditional) Inception Score with a domain classifier -----------------------------------------------------
def domain_classifier(path: str) -> torch.jit.ScriptModule:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"evaluate.domain_classifier: no TorchScript file at {path}")
    return torch.jit.load(path, map_location="cpu").eval()


def inception_scores(probs: torch.Tensor) -> dict[str, float]:
    """MUNIT's CIS and IS from class probabilities ``probs`` (N inputs, K outputs each, C classes)."""
    p = probs.double().clamp_min(1e-12)

    def score(prior: torch.Tensor) -> float:  # exp(mean KL(p(y|x) ‖ prior))
        return float((p * (p.log() - prior.log())).sum(-1).mean().exp())

    return {"cis": score(p.mean(dim=1, keepdim=True)), "is": score(p.mean(dim=(0, 1), keepdim=True))}


def sample_grid(columns: list[torch.Tensor], max_rows: int = 8):
    """A PIL image with one row per sample and one column per tensor (e.g. input | output | target)."""
    from PIL import Image
    from torchvision.utils import make_grid

    rows = min(max_rows, columns[0].shape[0])
    tiles = torch.stack([to_unit(c[i].detach().cpu()) for i in range(rows) for c in columns])
    grid = make_grid(tiles, nrow=len(columns), padding=2, pad_value=1.0)
    return Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8"))

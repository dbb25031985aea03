"""Image metrics: paired (L1, PSNR, SSIM), reconstruction (MSE, PSNR) and distribution (FID, KID) via torchmetrics;
LPIPS diversity and the (conditional) Inception Score of multimodal translations; sample grids.

Images come in as the models produce them, in [-1, 1]; metrics see [0, 1] (``data_range=1``). SSIM is torchmetrics'
11×11 Gaussian window (σ 1.5), which differs slightly from scikit-image's default 7×7 uniform window.

FID/KID use a pluggable feature network:

* ``inception``: the standard TF-ported Inception (``weights-inception-2015-12-05-6726825d.pth``, the file
  torch-fidelity/torchmetrics use) with ``antialias=False`` for parity with the usual FID code. It is loaded from
  ``weights_path`` or the ``$TORCH_HOME/hub/checkpoints`` cache and never downloaded at run time.
* ``tiny``: a small seeded random conv net — the same for every run, for tests and offline smoke runs. Its numbers
  compare runs with each other, not with published FIDs.

FID and KID are computed from per-part feature statistics (``FeatureStats``: Σf, Σffᵀ and a bounded, seeded KID
sample), so ranks and Ray workers combine statistics, never images; one feature net serves both.

LPIPS (Zhang et al., CVPR 2018, v0.1 "alex") is torchmetrics' implementation over torchvision's AlexNet, built
without weights and loaded from ``alexnet-owt-7be5be79.pth`` (a configured path or the ``$TORCH_HOME`` cache, never
downloaded); its linear layers come from the torchmetrics wheel (byte-identical to the ``lpips`` package's).
``tiny`` swaps in a seeded random backbone for tests and offline runs.

Conditional IS / IS follow MUNIT's ``test_batch.py``: p(y|x) = softmax of a *domain classifier* (any TorchScript
module mapping images in [-1, 1] to logits); CIS = exp(mean over outputs of KL(p(y|x_out) ‖ p_i(y))) with p_i the
mean prediction over the K outputs of the same input i; IS the same with p(y) over all outputs (no splits).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
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


def recon_sums(rec: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """[Σ MSE, Σ PSNR, n] of reconstructions over a batch (float64 sums). MSE is per pixel on the models' [-1, 1]
    scale (what an autoencoder's reconstruction term measures); PSNR on [0, 1] (``data_range=1``), per image, as
    :func:`paired_sums` computes it."""
    r, x = rec.detach().double(), real.detach().double()
    mse = (r - x).pow(2).mean(dim=(1, 2, 3))
    mse01 = (to_unit(r) - to_unit(x)).pow(2).mean(dim=(1, 2, 3)).double()
    psnr = 10.0 * torch.log10(1.0 / mse01.clamp_min(1e-10))
    return torch.stack([mse.sum(), psnr.sum(), torch.tensor(float(r.shape[0]), dtype=torch.float64, device=r.device)])


def recon_means(sums: torch.Tensor) -> dict[str, float]:
    n = max(float(sums[2]), 1.0)
    return {"mse": float(sums[0]) / n, "psnr": float(sums[1]) / n}


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

        net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                 feature_extractor_weights_path=inception_weights(weights_path), antialias=False)
        net.num_features = 2048
        return net
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


KID_POOL = 10_000  # features kept per side for KID (a seeded uniform sample once a side has more images)
KID_SUBSETS = 100  # torchmetrics' default number of KID subsets


def image_priorities(u8: torch.Tensor, seed: int) -> torch.Tensor:
    """(N,) int64: a seeded hash of each uint8 image's pixels — the order KID's bounded sample keeps and draws
    from. It depends on the image only, so the sample does not depend on batch order or on how images are split
    over ranks and workers."""
    key = seed.to_bytes(8, "little", signed=True)
    arr = u8.detach().cpu().contiguous().numpy()
    return torch.tensor([int.from_bytes(hashlib.blake2b(a.tobytes(), digest_size=8, key=key).digest(), "little",
                                        signed=True) for a in arr], dtype=torch.int64)


class FeatureStats:
    """Statistics of one side (real or generated) in feature space: n, Σf and Σffᵀ (float64, on the features'
    device: all-reduced across ranks by summing) for FID, and for KID a bounded sample — the ``cap`` features whose
    image priority is lowest (on CPU; merged by union and truncation). Memory: O(dim² + cap·dim), whatever n."""

    def __init__(self, dim: int, cap: int = KID_POOL, device: torch.device | str = "cpu"):
        self.cap = cap
        self.n = torch.zeros((), dtype=torch.float64, device=device)
        self.sum = torch.zeros(dim, dtype=torch.float64, device=device)
        self.gram = torch.zeros(dim, dim, dtype=torch.float64, device=device)
        self.keys, self.pool = torch.zeros(0, dtype=torch.int64), torch.zeros(0, dim)

    def add(self, features: torch.Tensor, keys: torch.Tensor) -> None:
        f64 = features.double()
        self.n += f64.shape[0]
        self.sum += f64.sum(dim=0)
        self.gram += f64.t().mm(f64)  # as torchmetrics' FrechetInceptionDistance.update
        self._keep(torch.cat([self.keys, keys]), torch.cat([self.pool, features.detach().float().cpu()]))

    def _keep(self, keys: torch.Tensor, pool: torch.Tensor) -> None:
        order = torch.argsort(keys, stable=True)[: self.cap]
        self.keys, self.pool = keys[order], pool[order]

    def pool_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.keys, self.pool

    def merge(self, other: dict) -> None:
        """Add another part's statistics (``state()`` of a part of the same images' split)."""
        self.n += other["n"].to(self.n.device)
        self.sum += other["sum"].to(self.sum.device)
        self.gram += other["gram"].to(self.gram.device)
        self.merge_pools([(other["keys"], other["pool"])])

    def merge_pools(self, pools: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self._keep(torch.cat([self.keys, *(k for k, _ in pools)]), torch.cat([self.pool, *(p for _, p in pools)]))

    def state(self) -> dict[str, torch.Tensor]:
        return {"n": self.n.cpu(), "sum": self.sum.cpu(), "gram": self.gram.cpu(), "keys": self.keys,
                "pool": self.pool, "cap": self.cap}

    def mean_cov(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (self.sum / self.n).unsqueeze(0)
        cov = (self.gram - self.n * mean.t().mm(mean)) / (self.n - 1)
        return mean.squeeze(0).cpu(), cov.cpu()


class Distribution:
    """FID + KID of generated vs real images in [-1, 1], from per-part statistics (:class:`FeatureStats`): ranks
    and workers each ``update`` with their own images, then ``combine`` (inside a torch.distributed group) or
    ``merge`` (states handed back by Ray tasks) — only statistics travel, never images. ONE feature network serves
    FID and KID (built here from ``kind``, or handed in as ``net`` to share it between several distributions).

    FID equals torchmetrics' ``FrechetInceptionDistance`` on the same images (its sums, its ``_compute_fid``). KID
    is torchmetrics' estimator (``poly_mmd``, mean over ``KID_SUBSETS`` subsets of ``kid_subset_size``) over each
    side's bounded sample, drawn in priority order from a generator seeded with ``seed``: the same number however
    the images were ordered or split. With at most ``kid_subset_size`` images on a side every subset is the whole
    side, so KID is then exact and deterministic."""

    def __init__(self, kind: str = "inception", weights_path: str | None = None, kid_subset_size: int = 1000, *,
                 seed: int = 0, net: nn.Module | None = None, device: torch.device | str = "cpu",
                 kid_pool: int = KID_POOL):
        self.net = (net if net is not None else feature_net(kind, weights_path)).to(device).eval()
        self.device, self.seed, self.kid_subset_size = torch.device(device), seed, kid_subset_size
        dim = feature_dim(self.net)
        self.real, self.fake = (FeatureStats(dim, max(kid_pool, kid_subset_size), device) for _ in range(2))

    @classmethod
    def from_states(cls, states: list[dict], *, kid_subset_size: int = 1000, seed: int = 0) -> "Distribution":
        """The statistics of several parts (``state()`` of each) combined, without a feature net (nothing left to
        measure: compute only)."""
        d = cls.__new__(cls)
        d.net, d.device, d.seed, d.kid_subset_size = None, torch.device("cpu"), seed, kid_subset_size
        dim, cap = states[0]["real"]["sum"].shape[0], states[0]["real"]["cap"]
        d.real, d.fake = FeatureStats(dim, cap), FeatureStats(dim, cap)
        for state in states:
            d.merge(state)
        return d

    @property
    def n_real(self) -> int:
        return int(self.real.n)

    @property
    def n_fake(self) -> int:
        return int(self.fake.n)

    @torch.no_grad()
    def update(self, images: torch.Tensor, real: bool) -> None:
        if images.shape[0] == 0:
            return
        u8 = (to_unit(images) * 255).round().to(torch.uint8)
        features = self.net(u8.to(self.device))
        (self.real if real else self.fake).add(features.reshape(u8.shape[0], -1), image_priorities(u8, self.seed))

    def state(self) -> dict:
        return {"real": self.real.state(), "fake": self.fake.state()}

    def merge(self, state: dict) -> None:
        self.real.merge(state["real"])
        self.fake.merge(state["fake"])

    def combine(self, all_reduce: Callable[[torch.Tensor], torch.Tensor], all_gather: Callable[[object], list]
                ) -> None:
        """Every rank's statistics on every rank: sums all-reduced in place, KID samples gathered (≤ cap each)."""
        for side in (self.real, self.fake):
            for t in (side.n, side.sum, side.gram):
                all_reduce(t)
        parts = all_gather((self.real.pool_state(), self.fake.pool_state()))
        for i, side in enumerate((self.real, self.fake)):
            side.keys, side.pool = torch.zeros(0, dtype=torch.int64), side.pool[:0]
            side.merge_pools([p[i] for p in parts])

    def compute(self) -> dict[str, float]:
        from torchmetrics.image.fid import _compute_fid
        from torchmetrics.image.kid import poly_mmd

        (mu_r, cov_r), (mu_f, cov_f) = self.real.mean_cov(), self.fake.mean_cov()
        fid = _compute_fid(mu_r, cov_r, mu_f, cov_f)
        real, fake = self.real.pool, self.fake.pool
        size = min(self.kid_subset_size, real.shape[0], fake.shape[0])
        g = torch.Generator().manual_seed(self.seed)
        scores = [poly_mmd(real[torch.randperm(real.shape[0], generator=g)[:size]],
                           fake[torch.randperm(fake.shape[0], generator=g)[:size]]) for _ in range(KID_SUBSETS)]
        return {"fid": float(fid), "kid": float(torch.stack(scores).mean())}


def feature_dim(net: nn.Module) -> int:
    """Width of a feature net's output (``feature_net`` sets ``num_features`` on every net it builds)."""
    return int(net.num_features)


# --- LPIPS -----------------------------------------------------------------------------------------------------
ALEX_LAYERS = 12  # LPIPS taps relu1 … relu5 of torchvision's ``alexnet().features[:12]``


class LPIPS(nn.Module):
    """LPIPS v0.1 (alex) as torchmetrics implements it (``_NoTrainLpips``: Σ_l mean_hw w_l · (φ̂_l(x) − φ̂_l(y))²,
    φ̂_l = AlexNet ReLU tap l unit-normalised over channels), returning one distance per pair. Images
    (N, 3, H, W) in [-1, 1], H, W ≥ 32 (AlexNet's pooling needs it); returns (N,)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net.eval().requires_grad_(False)

    @property
    def features(self) -> nn.Sequential:
        """The AlexNet layers (torchvision's ``features`` indices, shared with ``net``)."""
        layers = {int(i): m for s in self.net.net.children() for i, m in s.named_children()}
        return nn.Sequential(*(layers[i] for i in range(len(layers))))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < 32:
            raise ValueError(f"LPIPS (AlexNet) needs images of at least 32x32, got {tuple(x.shape[-2:])}")
        return self.net(x.float(), y.float()).reshape(x.shape[0])


def lpips_net(backbone: str = "alex", weights_path: str | None = None) -> LPIPS:
    """torchmetrics' LPIPS over torchvision's AlexNet, built without weights (so nothing is downloaded), then
    loaded: ``alex`` the ImageNet backbone from ``weights_path`` / the ``$TORCH_HOME`` cache, ``tiny`` seeded random
    convs; the linear layers from the torchmetrics wheel (``lpips_identity`` hashes the same files)."""
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    if backbone not in ("alex", "tiny"):
        raise ValueError(f"unknown LPIPS backbone '{backbone}'; choose alex or tiny")
    path = (cached_weights(ALEXNET_FILE, ALEXNET_URL, weights_path, needed_by="LPIPS", config_key="lpips_weights",
                           fallback="evaluate.lpips_backbone=tiny") if backbone == "alex" else None)
    with torch.random.fork_rng(devices=[]):  # torchvision's random init must not move the caller's RNG
        net = LPIPS(_NoTrainLpips(net="alex", pretrained=True, pnet_rand=True, model_path=_lpips_lin_file()))
    features = net.features
    if path:
        state = torch.load(path, map_location="cpu", weights_only=True)
        features.load_state_dict({k.removeprefix("features."): v for k, v in state.items()
                                  if k.startswith("features.") and int(k.split(".")[1]) < ALEX_LAYERS})
    else:
        g = torch.Generator().manual_seed(TINY_LPIPS_SEED)
        for m in features:
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.data = torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5
                m.bias.data.zero_()
    return net


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

"""CoGAN — Liu & Tuzel, "Coupled Generative Adversarial Networks", NeurIPS 2016. Authors' code: mingyuliutw/CoGAN
@ f940c28 — the Caffe code (``cogan/``) and its PyTorch port (``cogan_pytorch/src``: ``net_cogan_mnistedge.py``
``CoGen28x28`` / ``CoDis28x28``, ``trainer_cogan_mnistedge.py``, ``exps/mnistedge_cogan.yaml``), which this follows.

Data mode: **unpaired** — ``batch = {"real_a": x_a, "real_b": x_b}``, independently drawn, images in [-1, 1]. No
correspondence is used: the two domains share only the noise z and the coupled weights.

Networks (two nets, each holding the two domains' pathways, so a shared layer is one module, one parameter object,
inside one DDP wrapper):

* ``G`` (coupled generators) z → (x_a, x_b): the first layers are shared (they decode the high-level semantics),
  the last layer is each domain's own (it renders the low-level details).
* ``D`` (coupled discriminators) (x_a, x_b) → 2-class logits of both, concatenated along the batch: the first
  layer is each domain's own, the rest are shared.

``arch="digits"`` (the standard, the PyTorch port's 28×28 networks; ``image_size`` must be 28):
G: convT4 z(100) → 1024×4×4, BN, PReLU; convT3-s2-p1 → 512 (7×7), 256 (13×13), 128 (25×25), each BN + PReLU —
shared, 7,833,476; then convT6-s1-p1 → 1 (28×28) + sigmoid per domain, 4,609 each: **G 7,842,694**.
D: conv5 → 20 + maxpool per domain (520 each); shared conv5 → 50 + maxpool, conv4 → 500 + PReLU, conv1 → 2
logits (426,553): **D 427,593**. BN without affine parameters, PReLU with one scalar slope (the port's).
Widths scale with ``ngf`` (G: 8·ngf, 4·ngf, 2·ngf, ngf; 128 by default) and ``ndf`` (D: ndf, 5·ndf/2, 25·ndf;
20 by default) for small test models.

``arch="conv64"`` (photos; the repo's face prototxt is an uncoupled single GAN and the paper's coupled face split
could not be checked, so this is our documented configuration, in the port's conventions): a DCGAN-shaped pair
for ``image_size`` = 2^k ≥ 8 (64 by default), ``in_channels`` 3, tanh output.
G: convT4 z → 8·ngf×4×4, then convT4-s2-p1 stages halving the width up to ngf at image_size/2, each BN + PReLU —
shared; the last convT4-s2-p1 → in_channels + tanh per domain. D: conv4-s2-p1 → ndf + PReLU per domain; shared
conv4-s2-p1 stages doubling the width down to 4×4, each BN + PReLU, then conv4 → 2 logits. Init N(0, 0.02), bias
0 (the Caffe CelebA prototxt's ``gaussian`` filler; measured on the demo photos, 32 px, 300 steps: with the port's
xavier init the pair stayed pixel noise, with N(0, 0.02) it draws colour layouts). At 64 px, ngf = ndf =
64, 3 channels: G 3,578,826 (shared 3,572,676, 3,075 per domain), D 2,776,071 (shared 2,769,797, 3,137 per domain)
(``tests/i2i_models/test_cogan.py``).

Pixel range: the digits networks end in a sigmoid and the authors feed them images in [0, 1]; here the pipeline's
[-1, 1] images are mapped to (x + 1)/2 before D sees them and every output of ``translate`` / ``sample_pair`` is
mapped back (2·G(z) − 1), so D sees exactly what the authors' D sees. conv64 (tanh) works in [-1, 1] throughout.

Objective (the seed's value function, written as the authors do: a 2-class softmax cross-entropy, real = 1,
fake = 0, over both domains' samples concatenated along the batch, mean over the 2N rows):

* ``d_real`` (group D, weight 1): CE(D(x_a) ∪ D(x_b), 1)          = −E[log D₁(x₁)] − E[log D₂(x₂)]   (÷2)
* ``d_fake`` (group D, weight 1): CE(D(G_a(z)) ∪ D(G_b(z)), 0)    = −E[log(1 − D₁(G₁(z)))] − …       (÷2)
* ``gan``    (group G, weight 1): CE(D(G_a(z')) ∪ D(G_b(z')), 1)  — the non-saturating generator loss

``train_step`` is the port's iteration: a D step on real images and G(z) (z ~ N(0, I), 100-d; fakes detached —
the port zeroes G's gradients before G's own step, the same update), then, with fresh noise z', a G step against
the updated D. Adam lr 2e-4, β (0.5, 0.999), **weight decay 5e-4** for both; digits init xavier_uniform (gain
√2), bias 0.1 (the port's; conv64: see above). Run length: 5,000 iterations (mnistedge; the port's batch is 64 per domain).

Where the PyTorch port differs from the Caffe code / paper (the sheet's "Surprises"): no Dropout in D (Caffe: 0.5
after the 500-d layer); z ~ N(0, I) instead of U[−1, 1]; scalar PReLU (Caffe: per channel) and BN without a learned
bias (Caffe: a per-channel Bias layer after BN); batch 64 instead of 128; 5k instead of 50k iterations; xavier
instead of msra init. The domain-adaptation variant (a classifier on D's shared features) is not built here.

Translation, the paper's way (§5): there is no translation network. ``translate(x, direction="a2b")`` searches
z* = argmin_z ‖G_a(z) − x‖² (mean over pixels, per image), then renders G_b(z*). The search: z starts at one
vector drawn from N(0, I) by a ``torch.Generator`` seeded with ``seed`` (the same start for every image, so an
image's result does not depend on the others in its batch), then ``steps`` Adam steps (lr ``translate_lr``) on z
alone — the gradient is taken with ``torch.autograd.grad`` with respect to z, so nothing accumulates on the
networks — keeping, per image, the z of the lowest error seen. G runs in eval mode (BN on its running averages:
an image does not depend on its batch), modes restored afterwards. Deterministic for one seed; grad is re-enabled
locally, so it works under ``torch.no_grad()`` (validation, evaluation, serving). The paper does not state its
optimiser for this search; Adam on z with an L2 reconstruction loss is our choice.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from i2i_models.base import I2IModel, LossTerm, RunLength, StepOutput, unwrap
from i2i_models.blocks.init import init_weights
from i2i_models.registry import register_model
from i2i_models.unit_base import Direction, parse_direction

Arch = Literal["digits", "conv64"]
DEFAULT_WIDTHS = {"digits": (128, 20), "conv64": (64, 64)}  # (ngf, ndf) of each architecture


@dataclass(frozen=True, kw_only=True)
class CoGANConfig:
    arch: Arch = "digits"  # "digits": the port's 28×28 networks (the standard); "conv64": DCGAN-shaped, photos
    image_size: int = 28  # digits: 28 only; conv64: a power of two ≥ 8 (64 for photos)
    in_channels: int = 1  # 1 for digits, 3 for photos
    nz: int = 100  # the port's latent_dims
    ngf: int | None = None  # None: the architecture's default (digits 128, conv64 64)
    ndf: int | None = None  # None: the architecture's default (digits 20, conv64 64)
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    weight_decay: float = 5e-4
    n_iters: int = 5_000  # mnistedge_cogan.yaml max_iter
    translate_steps: int = 200  # Adam steps of the latent search in translate()
    translate_lr: float = 0.05

    def __post_init__(self):
        if self.arch not in DEFAULT_WIDTHS:
            raise ValueError(f"arch must be one of {sorted(DEFAULT_WIDTHS)}, got {self.arch!r}")
        if self.arch == "digits" and self.image_size != 28:
            raise ValueError(f"arch 'digits' makes 28×28 images (the port's CoGen28x28), not {self.image_size}: "
                             "use arch 'conv64' for other sizes")
        k = math.log2(self.image_size)
        if self.arch == "conv64" and (k != int(k) or self.image_size < 8):
            raise ValueError(f"arch 'conv64' needs image_size a power of two ≥ 8, got {self.image_size}")

    @property
    def widths(self) -> tuple[int, int]:
        ngf, ndf = DEFAULT_WIDTHS[self.arch]
        return self.ngf or ngf, self.ndf or ndf


def _up(cin: int, cout: int, k: int, s: int, p: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, k, s, p), nn.BatchNorm2d(cout, affine=False), nn.PReLU())


class CoupledGenerator(nn.Module):
    """z (N, nz) → (x_a, x_b): ``shared`` trunk, then ``head_a`` / ``head_b`` (last layer + output nonlinearity)."""

    def __init__(self, c: CoGANConfig):
        super().__init__()
        ngf, _ = c.widths
        if c.arch == "digits":  # 1×1 → 4 → 7 → 13 → 25 → 28
            self.shared = nn.Sequential(_up(c.nz, 8 * ngf, 4, 1, 0), _up(8 * ngf, 4 * ngf, 3, 2, 1),
                                        _up(4 * ngf, 2 * ngf, 3, 2, 1), _up(2 * ngf, ngf, 3, 2, 1))
            head = lambda: nn.Sequential(nn.ConvTranspose2d(ngf, c.in_channels, 6, 1, 1), nn.Sigmoid())  # noqa
        else:  # 1×1 → 4 → 8 → … → size/2 (shared), → size (per domain)
            n = int(math.log2(c.image_size)) - 2  # stride-2 stages after 4×4
            widths = [ngf * 2 ** (n - 1 - i) for i in range(n)]  # …, 2·ngf, ngf
            layers = [_up(c.nz, widths[0], 4, 1, 0)]
            layers += [_up(a, b, 4, 2, 1) for a, b in zip(widths, widths[1:])]
            self.shared = nn.Sequential(*layers)
            head = lambda: nn.Sequential(nn.ConvTranspose2d(ngf, c.in_channels, 4, 2, 1), nn.Tanh())  # noqa
        self.head_a, self.head_b = head(), head()

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.shared(z.view(z.size(0), z.size(1), 1, 1))
        return self.head_a(h), self.head_b(h)


class CoupledDiscriminator(nn.Module):
    """(x_a, x_b) → logits (N_a + N_b, 2): ``first_a`` / ``first_b`` per domain, then the ``shared`` layers on both
    domains' features concatenated along the batch (the port's ``torch.cat((h0_a, h0_b), 0)``)."""

    def __init__(self, c: CoGANConfig):
        super().__init__()
        _, ndf = c.widths
        if c.arch == "digits":  # 28 → conv5 24 → pool 12 → conv5 8 → pool 4 → conv4 1
            first = lambda: nn.Sequential(nn.Conv2d(c.in_channels, ndf, 5), nn.MaxPool2d(2))  # noqa: E731
            hidden = 25 * ndf  # 500
            self.shared = nn.Sequential(nn.Conv2d(ndf, 5 * ndf // 2, 5), nn.MaxPool2d(2),
                                        nn.Conv2d(5 * ndf // 2, hidden, 4), nn.PReLU(), nn.Conv2d(hidden, 2, 1))
        else:  # size → size/2 (per domain) → … → 4 (shared) → 1
            first = lambda: nn.Sequential(nn.Conv2d(c.in_channels, ndf, 4, 2, 1), nn.PReLU())  # noqa: E731
            n = int(math.log2(c.image_size)) - 3  # stride-2 stages from size/2 down to 4
            widths = [ndf * 2 ** i for i in range(n + 1)]
            layers: list[nn.Module] = []
            for a, b in zip(widths, widths[1:]):
                layers += [nn.Conv2d(a, b, 4, 2, 1), nn.BatchNorm2d(b, affine=False), nn.PReLU()]
            self.shared = nn.Sequential(*layers, nn.Conv2d(widths[-1], 2, 4))
        self.first_a, self.first_b = first(), first()

    def forward(self, x_a: torch.Tensor, x_b: torch.Tensor) -> torch.Tensor:
        h = torch.cat((self.first_a(x_a), self.first_b(x_b)), 0)
        return self.shared(h).flatten(1)  # (N_a + N_b, 2)


def xavier_init(net: nn.Module) -> nn.Module:
    """The port's ``xavier_weights_init``: every (transposed) conv weight xavier_uniform with gain √2, bias 0.1."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.xavier_uniform_(m.weight, gain=math.sqrt(2))
            nn.init.constant_(m.bias, 0.1)
    return net


def softmax_gan(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """2-class softmax cross-entropy of (M, 2) logits against the label 1 (real) or 0 (fake), mean over M."""
    target = torch.full((logits.size(0),), int(real), dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits.float(), target)


@register_model("cogan")
class CoGAN(I2IModel):
    data_mode = "unpaired"
    loss_terms = (
        LossTerm("gan", 1.0, "G", "CE(D(G_a(z)) ∪ D(G_b(z)), real): the non-saturating coupled generator loss"),
        LossTerm("d_real", 1.0, "D", "CE(D(x_a) ∪ D(x_b), real)"),
        LossTerm("d_fake", 1.0, "D", "CE(D(G_a(z)) ∪ D(G_b(z)), fake)"),
    )
    inference_nets = ("G",)
    Config = CoGANConfig
    config: CoGANConfig

    def __init__(self, config: CoGANConfig, *, loss_weights=None):
        super().__init__(config, loss_weights=loss_weights)
        init = xavier_init if config.arch == "digits" else lambda net: init_weights(net, "normal", 0.02)
        self.nets["G"] = init(CoupledGenerator(config))
        self.nets["D"] = init(CoupledDiscriminator(config))

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        return {name: torch.optim.Adam(net.parameters(), lr=c.lr, betas=(c.beta1, c.beta2),
                                       weight_decay=c.weight_decay) for name, net in self.nets.items()}

    @classmethod
    def run_length(cls, config: CoGANConfig) -> RunLength:
        return RunLength("iterations", config.n_iters)

    def example_batch(self, n: int = 2, size: int | None = None, *, generator: torch.Generator | None = None,
                      device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        size, c = size or self.config.image_size, self.config.in_channels  # digits: one channel
        img = lambda: (torch.rand(n, c, size, size, generator=generator) * 2 - 1).to(device)  # noqa: E731
        return {"real_a": img(), "real_b": img()}

    # --- pixel range: the networks' (digits: [0, 1], sigmoid) ↔ the pipeline's [-1, 1] -------------------------
    def to_net(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 1) / 2 if self.config.arch == "digits" else x

    def from_net(self, y: torch.Tensor) -> torch.Tensor:
        return y * 2 - 1 if self.config.arch == "digits" else y

    def draw_z(self, n: int, *, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """z ~ N(0, I), (n, nz) (the port's ``torch.randn``); with a generator drawn on the CPU, then moved."""
        where = {"generator": generator} if generator is not None else {"device": device}
        return torch.randn(n, self.config.nz, **where).to(device)

    # --- training --------------------------------------------------------------------------------------------
    def train_step(self, batch, step: int) -> StepOutput:
        x_a, x_b = self.to_net(batch["real_a"]), self.to_net(batch["real_b"])
        G, D = self.nets["G"], self.nets["D"]
        with torch.no_grad(), self.autocast(x_a):  # D step: fakes of noise z, no graph into G
            fake_a, fake_b = G(self.draw_z(x_a.size(0), device=x_a.device))
        with self.autocast(x_a):
            d_raw = {"d_real": softmax_gan(D(x_a, x_b), True),
                     "d_fake": softmax_gan(D(fake_a.detach(), fake_b.detach()), False)}
        self.step_nets(("D",), self.weighted(d_raw, "D"))
        with self._frozen("D") as D_plain, self.autocast(x_a):  # G step, fresh noise z', against the updated D
            gen_a, gen_b = G(self.draw_z(x_a.size(0), device=x_a.device))
            g_raw = {"gan": softmax_gan(D_plain(gen_a, gen_b), True)}
        self.step_nets(("G",), self.weighted(g_raw, "G"))
        images = {"real_a": batch["real_a"], "real_b": batch["real_b"], "fake_a": self.from_net(gen_a.float()),
                  "fake_b": self.from_net(gen_b.float())}
        return StepOutput(losses={k: v.detach() for k, v in {**d_raw, **g_raw}.items()},
                          images={k: v.detach() for k, v in images.items()})

    @contextlib.contextmanager
    def _frozen(self, name: str) -> Iterator[nn.Module]:
        """The plain network ``name`` with its parameters frozen: gradients flow through it, not into it."""
        net = unwrap(self.nets[name]).requires_grad_(False)
        try:
            yield net
        finally:
            net.requires_grad_(True)

    @contextlib.contextmanager
    def _inference_g(self) -> Iterator[nn.Module]:
        """The plain G in eval mode (BN on running averages), the modules' modes restored afterwards."""
        G = unwrap(self.nets["G"])
        modes = {m: m.training for m in G.modules()}
        G.eval()
        try:
            yield G
        finally:
            for m, mode in modes.items():
                m.train(mode)

    # --- inference -------------------------------------------------------------------------------------------
    def latent_search(self, x: torch.Tensor, *, domain: str = "a", steps: int | None = None,
                      seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(z*, err): per image, the z of the lowest ‖G_domain(z) − x‖² (mean over pixels) seen in ``steps`` Adam
        steps from the seeded start (see the module docstring); ``err`` (N,) its error, in the networks' range."""
        if domain not in ("a", "b"):
            raise ValueError(f"domain must be 'a' or 'b', got {domain!r}")
        steps = self.config.translate_steps if steps is None else int(steps)
        if steps < 0:
            raise ValueError(f"steps must be ≥ 0, got {steps}")
        target = self.to_net(x.float()).detach()
        index = 0 if domain == "a" else 1
        start = self.draw_z(1, generator=torch.Generator().manual_seed(int(seed)), device=x.device)
        z = start.repeat(x.size(0), 1).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=self.config.translate_lr)
        best_z, best_err = z.detach().clone(), torch.full((x.size(0),), math.inf, device=x.device)
        with torch.enable_grad(), self._inference_g() as G:
            for i in range(steps + 1):
                with self.autocast(x):
                    err = (G(z)[index].float() - target).pow(2).flatten(1).mean(1)  # (N,)
                better = err.detach() < best_err
                best_err = torch.where(better, err.detach(), best_err)
                best_z = torch.where(better[:, None], z.detach(), best_z)
                if i == steps:
                    break
                (z.grad,) = torch.autograd.grad(err.sum(), z)  # per image: its own error's gradient only
                opt.step()
        return best_z, best_err

    @torch.no_grad()
    def translate(self, x: torch.Tensor, *, direction: Direction = "a2b", steps: int | None = None,
                  seed: int = 0) -> torch.Tensor:
        """x (N, C, H, W) in [-1, 1] of the source domain → G_target(z*), z* = :meth:`latent_search` of x in the
        source domain (``steps`` default ``translate_steps``, start seeded by ``seed``); [-1, 1]."""
        src, tgt = parse_direction(direction)
        z, _ = self.latent_search(x, domain=src, steps=steps, seed=seed)
        with self._inference_g() as G, self.autocast(x):
            return self.from_net(G(z)[0 if tgt == "a" else 1].float())

    @torch.no_grad()
    def sample_pair(self, n: int, *, seed: int | None = None,
                    device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(G_a(z), G_b(z)), z ~ N(0, I): n corresponding images of both domains in [-1, 1], the same for one seed."""
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        z = self.draw_z(n, generator=generator, device=device)
        with self._inference_g() as G, self.autocast(z):
            a, b = G(z)
        return self.from_net(a.float()), self.from_net(b.float())

"""Triangle GAN (Δ-GAN) — Gan, Chen, Wang, Pu, Zhang, Liu, Li, Carin, "Triangle Generative Adversarial Networks",
NIPS 2017. Authors' code: LiqunChen0606/Triangle-GAN (TensorFlow; ``triGan_mnist.py``, ``model_mnist_utils.py``).

Data mode: **paired, semi-supervised** (``semi_paired``): of a paired dataset only ``paired_fraction`` of the pairs
are used as pairs, the rest as unpaired samples of each domain. ``batch = {"input": x_p, "target": y_p}`` (pairs)
``+ {"real_a": x_u, "real_b": y_u}`` (unpaired A and B, drawn independently), images in [-1, 1]
(``pipelines.feeds`` builds such batches). A batch without pairs trains without D1's real term (reported as 0); a
batch without unpaired images takes the pairs' own x and y as its samples of p(x) and p(y).

Networks: ``G_ab`` = G_y: x → ỹ, ``G_ba`` = G_x: y → x̃; ``D1(x, y)`` real pairs vs both kinds of fake pairs;
``D2(x, y)`` tells (x, G_ab(x)) pairs from (G_ba(y), y) pairs.

Objective (the seed): min_{G_x, G_y} max_{D1, D2} L_cGAN + L_BiGAN,

  L_cGAN  = E_{p(x,y)}[log D1(x, y)] + E_{p(y)}[log(1 − D1(G_x(y), y))] + E_{p(x)}[log(1 − D1(x, G_y(x)))]
  L_BiGAN = E_{p(y)}[log D2(G_x(y), y)] + E_{p(x)}[log(1 − D2(x, G_y(x)))]

As the authors implement it (every term a batch mean, weight 1 — there are no other weights in their code):

* ``d1_real``    (D1):   −log D1(x_p, y_p)
* ``d1_fake_ab`` (D1):   −log(1 − D1(x_u, G_ab(x_u)))
* ``d1_fake_ba`` (D1):   −log(1 − D1(G_ba(y_u), y_u))
* ``d2_ab``      (D2):   −log D2(x_u, G_ab(x_u))          D2's labels are the code's: 1 for G_y's pairs, the
* ``d2_ba``      (D2):   −log(1 − D2(G_ba(y_u), y_u))     mirror of the paper's D2 (code D2 = 1 − paper D2)
* ``gan1_ab``    (G_ab): −log D1(x_u, G_ab(x_u))          non-saturating: G_y's pairs should pass D1 …
* ``gan2_ab``    (G_ab): −log(1 − D2(x_u, G_ab(x_u)))     … and look like G_x's pairs to D2
* ``gan1_ba``    (G_ba): −log D1(G_ba(y_u), y_u)
* ``gan2_ba``    (G_ba): −log D2(G_ba(y_u), y_u)

D loss = L_D1 + L_D2 (the five D terms), G loss = L_G1 + L_G2 (the four G terms). The authors write
−log(σ(·) + 1e-8); here every term is the numerically stable binary cross-entropy on D's logits,
−log σ(l) = softplus(−l), which equals it to ~1e-8/σ(l) (tests/i2i_models/test_triangle_gan.py shows it).

Training (``train_step``, the authors' loop): ``d_steps`` D steps on the batch (5 in the MNIST script; fresh fakes
each, as every ``sess.run`` recomputes them), then one G step on the same batch, D1 and D2 frozen. One Adam over
D1+D2 (``optimizers["D"]``) and one over G_ab+G_ba (``optimizers["G"]``): lr 1e-4, β (0.5, 0.999). (The authors'
one TF ``AdamOptimizer`` object serves both ``minimize`` calls, so its bias-correction step count is shared by D and
G steps; here each optimizer counts its own steps — a difference in the first few hundred steps only.)

Configurations:

* ``arch="mnist"`` (standard, the authors' MNIST ↔ MNIST-transpose task, 28×28×1): both generators are the
  authors' "encoder": conv5-s2-32, conv5-s2-64 (TF SAME padding), conv5-s2-128 (VALID, 2×2), dropout 0.1 (keep
  0.9), FC 512 → 784, sigmoid — on this project's [−1, 1] scale, 2σ(h) − 1; ReLU everywhere, biases, xavier
  (uniform) init. D1 = D2: x and y **stacked along height** (56×28), the same conv stack (5×2×128), dropout, FC
  1280 → 1. G 659,216 parameters each, D 258,305 each, 1,835,042 in all (the reference's counts). The authors'
  dropout is always on (``tf.contrib.layers.dropout`` defaults to training mode, also when they sample);
  ``translate`` turns it off unless ``test_time_dropout``.
* ``arch="photo"`` (photos, 3 channels, e.g. 32–64 px; what the demo trains): G = CycleGAN's ResNet
  encoder-decoder (``blocks.resnet``: c7s1-ngf, two stride-2 downs, ``n_blocks`` residual blocks, two ups, tanh),
  D1 = D2 = pix2pix's 70×70 PatchGAN on x and y **concatenated along channels** (6 in; the authors' CelebA D
  likewise takes its condition as extra channels), one logit per patch, the loss averaged over patches; instance
  norm, N(0, 0.02) init. At ngf = ndf = 64, 6 blocks, 3 → 3 channels: G 7,837,699 each, D 2,767,809 each,
  21,211,016 in all (at any image size: the networks are fully convolutional).

Run length: ``n_epochs`` (10, the authors' CelebA run; their MNIST script runs open-ended), an epoch being one
pass over the unpaired part. ``translate(x)`` = G_ab(x) (A → B); ``translate(x, direction="b2a")`` = G_ba(x).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from i2i_models import losses
from i2i_models.base import I2IModel, LossTerm, RunLength, StepOutput, unwrap
from i2i_models.blocks.discriminators import PatchDiscriminator
from i2i_models.blocks.init import init_weights
from i2i_models.blocks.norms import Norm
from i2i_models.blocks.resnet import ResnetGenerator
from i2i_models.registry import register_model

Direction = Literal["a2b", "b2a"]


@dataclass(frozen=True, kw_only=True)
class TriangleGANConfig:
    arch: Literal["mnist", "photo"] = "mnist"
    image_size: int = 28
    in_channels: int = 1  # domain A (x)
    out_channels: int = 1  # domain B (y)
    dropout: float = 0.1  # mnist: the authors' keep_prob 0.9 after the last conv of G and D
    test_time_dropout: bool = False  # the authors' dropout is on when they sample too
    ngf: int = 64  # photo: the ResNet generator's width
    ndf: int = 64  # photo: the PatchGAN's width
    n_blocks: int = 6  # photo: residual blocks (resnet_6blocks)
    n_layers_D: int = 3  # photo: 70×70 PatchGAN
    norm: Norm = "instance"  # photo
    init_gain: float = 0.02  # photo: N(0, gain) init (mnist: xavier uniform, as the authors)
    # semi-supervision: the share of the dataset's pairs used as pairs (the rest: unpaired samples of A and of B).
    # 0.1: the CelebA task's 10% (the MNIST task: 100 pairs next to 50,000 unpaired samples)
    paired_fraction: float = 0.1
    d_steps: int = 5  # D steps per G step on one batch: 5 in the MNIST script, 1 in CelebA's
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    n_epochs: int = 10

    def __post_init__(self) -> None:
        if not 0.0 <= self.paired_fraction <= 1.0:
            raise ValueError(f"paired_fraction must be in [0, 1], got {self.paired_fraction}")
        if self.d_steps < 1:
            raise ValueError(f"d_steps must be ≥ 1, got {self.d_steps}")
        if self.arch == "mnist" and _mnist_trunk_size(self.image_size) < 1:
            raise ValueError(f"arch 'mnist' needs image_size ≥ 17 (its three stride-2 convs), got {self.image_size}")


# --- the authors' MNIST networks --------------------------------------------------------------------------------
def _same(n: int) -> int:  # TF SAME, stride 2: ceil(n / 2)
    return -(-n // 2)


def _mnist_trunk_size(n: int) -> int:
    """Spatial size after conv5-s2 SAME, conv5-s2 SAME, conv5-s2 VALID."""
    m = _same(_same(n))
    return (m - 5) // 2 + 1 if m >= 5 else 0


class Conv2dSame(nn.Conv2d):
    """TensorFlow's ``padding='SAME'``: output ceil(n / stride), the padding split with the extra pixel after
    (bottom/right), as TF does — torch's symmetric ``padding=2`` would shift every feature by one pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for n, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class _MnistTrunk(nn.Sequential):
    """conv5-s2-32 (SAME), conv5-s2-64 (SAME), conv5-s2-128 (VALID), each + ReLU; dropout; flatten."""

    def __init__(self, channels: int, dropout: float):
        super().__init__(Conv2dSame(channels, 32, 5, 2), nn.ReLU(True), Conv2dSame(32, 64, 5, 2), nn.ReLU(True),
                         nn.Conv2d(64, 128, 5, 2), nn.ReLU(True), nn.Dropout(dropout), nn.Flatten())


class MnistGenerator(nn.Module):
    """The authors' ``encoder(x, 784)``: the trunk, FC → image, sigmoid (as 2σ − 1 on the [−1, 1] scale)."""

    def __init__(self, c_in: int, c_out: int, image_size: int, dropout: float):
        super().__init__()
        self.shape = (c_out, image_size, image_size)
        self.trunk = _MnistTrunk(c_in, dropout)
        self.fc = nn.Linear(128 * _mnist_trunk_size(image_size) ** 2, c_out * image_size**2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (2 * torch.sigmoid(self.fc(self.trunk(x))) - 1).view(-1, *self.shape)


class MnistPairDiscriminator(nn.Module):
    """The authors' ``discriminator(x, y)``: x above y (stacked along height), the trunk, FC → one logit (N, 1)."""

    def __init__(self, c_in: int, c_out: int, image_size: int, dropout: float):
        super().__init__()
        if c_in != c_out:
            raise ValueError("arch 'mnist' stacks x and y along height: they need the same number of channels")
        self.trunk = _MnistTrunk(c_in, dropout)
        h, w = _mnist_trunk_size(2 * image_size), _mnist_trunk_size(image_size)
        self.fc = nn.Linear(128 * h * w, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fc(self.trunk(torch.cat([x, y], dim=2)))


class PatchPairDiscriminator(PatchDiscriminator):
    """D(x, y) for photos: the PatchGAN on x and y concatenated along channels, one logit per patch."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(torch.cat([x, y], dim=1))


def _xavier(net: nn.Module) -> nn.Module:
    """tf.contrib.layers' xavier_initializer (uniform) for weights, zero biases."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return net


# --- the family ---------------------------------------------------------------------------------------------------
@register_model("triangle_gan")
class TriangleGAN(I2IModel):
    data_mode = "paired"
    semi_paired = True
    loss_terms = (
        LossTerm("d1_real", 1.0, "D1", "−log D1(x_p, y_p): real pairs"),
        LossTerm("d1_fake_ab", 1.0, "D1", "−log(1 − D1(x_u, G_ab(x_u))): G_y's fake pairs"),
        LossTerm("d1_fake_ba", 1.0, "D1", "−log(1 − D1(G_ba(y_u), y_u)): G_x's fake pairs"),
        LossTerm("d2_ab", 1.0, "D2", "−log D2(x_u, G_ab(x_u)): D2 labels G_y's pairs 1 (the code's labels)"),
        LossTerm("d2_ba", 1.0, "D2", "−log(1 − D2(G_ba(y_u), y_u)): … and G_x's pairs 0"),
        LossTerm("gan1_ab", 1.0, "G_ab", "−log D1(x_u, G_ab(x_u)): G_y's pairs should pass D1"),
        LossTerm("gan2_ab", 1.0, "G_ab", "−log(1 − D2(x_u, G_ab(x_u))): … and look like G_x's pairs to D2"),
        LossTerm("gan1_ba", 1.0, "G_ba", "−log D1(G_ba(y_u), y_u): G_x's pairs should pass D1"),
        LossTerm("gan2_ba", 1.0, "G_ba", "−log D2(G_ba(y_u), y_u): … and look like G_y's pairs to D2"),
    )
    inference_nets = ("G_ab", "G_ba")
    Config = TriangleGANConfig
    config: TriangleGANConfig
    D_NETS: ClassVar[tuple[str, str]] = ("D1", "D2")
    G_NETS: ClassVar[tuple[str, str]] = ("G_ab", "G_ba")

    def __init__(self, config: TriangleGANConfig, *, loss_weights=None):
        super().__init__(config, loss_weights=loss_weights)
        c = config
        for name, (c_in, c_out) in {"G_ab": (c.in_channels, c.out_channels),
                                    "G_ba": (c.out_channels, c.in_channels)}.items():
            if c.arch == "mnist":
                self.nets[name] = _xavier(MnistGenerator(c_in, c_out, c.image_size, c.dropout))
            else:
                G = ResnetGenerator(c_in, c_out, ngf=c.ngf, n_blocks=c.n_blocks, norm=c.norm)
                self.nets[name] = init_weights(G, gain=c.init_gain)
        for name in self.D_NETS:
            if c.arch == "mnist":
                self.nets[name] = _xavier(MnistPairDiscriminator(c.in_channels, c.out_channels, c.image_size,
                                                                 c.dropout))
            else:
                D = PatchPairDiscriminator(c.in_channels + c.out_channels, ndf=c.ndf, n_layers=c.n_layers_D,
                                           norm=c.norm)
                self.nets[name] = init_weights(D, gain=c.init_gain)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The authors' two Adams: one over D1 + D2, one over G_ab + G_ba."""
        c = self.config
        return {group: torch.optim.Adam([p for n in nets for p in self.nets[n].parameters()], lr=c.lr,
                                        betas=(c.beta1, c.beta2))
                for group, nets in (("D", self.D_NETS), ("G", self.G_NETS))}

    @classmethod
    def run_length(cls, config: TriangleGANConfig) -> RunLength:
        return RunLength("epochs", config.n_epochs)

    def example_batch(self, n: int = 2, size: int | None = None, *, generator: torch.Generator | None = None,
                      device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """A semi-paired batch: ``n`` pairs (input, target) and ``n`` unpaired images of each domain."""
        size, c = size or self.config.image_size, self.config
        img = lambda ch: (torch.rand(n, ch, size, size, generator=generator) * 2 - 1).to(device)  # noqa: E731
        return {"input": img(c.in_channels), "target": img(c.out_channels), "real_a": img(c.in_channels),
                "real_b": img(c.out_channels)}

    # --- the objective --------------------------------------------------------------------------------------------
    @staticmethod
    def samples(batch) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """(x_p, y_p, x_u, y_u): the pairs (None when the batch has none) and the samples of p(x), p(y) — the
        unpaired images, or the pairs' own x and y when the batch has no unpaired part."""
        x_p, y_p = batch.get("input"), batch.get("target")
        x_u, y_u = batch.get("real_a", x_p), batch.get("real_b", y_p)
        if x_u is None or y_u is None:
            raise ValueError("a Triangle GAN batch needs pairs (input, target) and/or unpaired real_a and real_b")
        return x_p, y_p, x_u, y_u

    def discriminator_losses(self, D1, D2, x_p, y_p, x_u, fake_b, fake_a, y_u) -> dict[str, torch.Tensor]:
        """L_D1 and L_D2's terms on fake pairs (x_u, fake_b = G_ab(x_u)) and (fake_a = G_ba(y_u), y_u)."""
        with self.autocast(x_u):
            raw = {"d1_fake_ab": losses.adversarial(D1(x_u, fake_b).float(), False),
                   "d1_fake_ba": losses.adversarial(D1(fake_a, y_u).float(), False),
                   "d2_ab": losses.adversarial(D2(x_u, fake_b).float(), True),
                   "d2_ba": losses.adversarial(D2(fake_a, y_u).float(), False)}
            if x_p is not None:
                raw["d1_real"] = losses.adversarial(D1(x_p, y_p).float(), True)
        return raw

    def generator_losses(self, D1, D2, x_u, fake_b, fake_a, y_u) -> dict[str, torch.Tensor]:
        """L_G1 and L_G2's terms (non-saturating)."""
        with self.autocast(x_u):
            d1_ab, d2_ab = D1(x_u, fake_b).float(), D2(x_u, fake_b).float()
            d1_ba, d2_ba = D1(fake_a, y_u).float(), D2(fake_a, y_u).float()
        return {"gan1_ab": losses.adversarial(d1_ab, True, for_discriminator=False),
                "gan2_ab": losses.adversarial(d2_ab, False, for_discriminator=False),
                "gan1_ba": losses.adversarial(d1_ba, True, for_discriminator=False),
                "gan2_ba": losses.adversarial(d2_ba, True, for_discriminator=False)}

    def train_step(self, batch, step: int) -> StepOutput:
        x_p, y_p, x_u, y_u = self.samples(batch)
        G_ab, G_ba = self.nets["G_ab"], self.nets["G_ba"]
        D1, D2 = self.nets["D1"], self.nets["D2"]
        for _ in range(self.config.d_steps):  # D steps on this batch, fresh fakes each (G's dropout)
            with torch.no_grad(), self.autocast(x_u):
                fake_b, fake_a = unwrap(G_ab)(x_u), unwrap(G_ba)(y_u)
            d_raw = self.discriminator_losses(D1, D2, x_p, y_p, x_u, fake_b, fake_a, y_u)
            self.step_nets(("D",), self.weighted(d_raw, "D1") + self.weighted(d_raw, "D2"))
        # G step: D1, D2 frozen and called outside their DDP wrappers (no reducer involved, no gradient for them)
        D1_plain, D2_plain = unwrap(D1).requires_grad_(False), unwrap(D2).requires_grad_(False)
        try:
            with self.autocast(x_u):
                fake_b, fake_a = G_ab(x_u), G_ba(y_u)
            g_raw = self.generator_losses(D1_plain, D2_plain, x_u, fake_b, fake_a, y_u)
            self.step_nets(("G",), self.weighted(g_raw, "G_ab") + self.weighted(g_raw, "G_ba"))
        finally:
            D1_plain.requires_grad_(True)
            D2_plain.requires_grad_(True)
        raw = {k: v.detach() for k, v in {**d_raw, **g_raw}.items()}
        raw.setdefault("d1_real", torch.zeros((), device=x_u.device))  # a batch without pairs
        shown = {"real_a": x_u, "fake_b": fake_b, "real_b": y_u, "fake_a": fake_a}
        return StepOutput(losses=raw, images={k: v.detach().float() for k, v in shown.items()})

    # --- inference --------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def translate(self, x: torch.Tensor, *, direction: Direction = "a2b", **condition: Any) -> torch.Tensor:
        """A→B with G_ab (``direction="a2b"``, the default) or B→A with G_ba (``"b2a"``); dropout off unless
        ``test_time_dropout``."""
        if condition:
            raise TypeError(f"{self.name}.translate takes only `direction`; unknown condition(s) {sorted(condition)}")
        if direction not in ("a2b", "b2a"):
            raise ValueError(f"direction must be 'a2b' or 'b2a', got {direction!r}")
        c = self.config
        name, channels = ("G_ab", c.in_channels) if direction == "a2b" else ("G_ba", c.out_channels)
        if x.dim() != 4 or x.shape[1] != channels:
            raise ValueError(f"direction {direction!r} takes (N, {channels}, H, W) images, got {tuple(x.shape)}")
        G = unwrap(self.nets[name])
        modes = {m: m.training for m in G.modules()}
        G.eval()
        for m in G.modules():
            if isinstance(m, nn.Dropout):
                m.train(c.test_time_dropout)
        try:
            with self.autocast(x):
                return G(x).float()
        finally:
            for m, mode in modes.items():
                m.train(mode)

"""CycleGAN — Zhu, Park, Isola, Efros. "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial
Networks", ICCV 2017. Authors' code: junyanz/pytorch-CycleGAN-and-pix2pix (models/cycle_gan_model.py,
models/networks.py, util/image_pool.py). DiscoGAN and DualGAN, of the same objective family, are in
``discogan_dualgan.py``.

Data mode: **unpaired** — ``batch = {"real_a": a, "real_b": b}``, independently shuffled domains, images in [-1, 1].

Networks (``nets``): ``G_ab`` A→B and ``G_ba`` B→A, ResNet generators (blocks/resnet.py: resnet_9blocks for 256 px,
resnet_6blocks below — ``n_blocks``), ngf 64, instance norm, no dropout; ``D_a`` judges domain-A images and ``D_b``
domain-B images, 70×70 PatchGANs (n_layers 3, ndf 64, instance norm) on 3 channels; init N(0, 0.02). Standard config:
G 11,378,179 parameters each (resnet_6blocks: 7,837,699), D 2,764,737 each. The authors' names differ: their G_A/G_B
are our G_ab/G_ba, and their D_A (which judges G_A's outputs, i.e. domain B) is our ``D_b``.

Objective (eq. 3 plus the identity loss of §5.2), with LSGAN in place of the log-likelihood (§4, "Training details"):

* ``gan_ab``   (G_ab, 1):   E_a[(D_b(G_ab(a)) − 1)²]                       G_ab's fakes should pass D_b
* ``gan_ba``   (G_ba, 1):   E_b[(D_a(G_ba(b)) − 1)²]
* ``cycle``    (G_ab, 10):  E_a[‖G_ba(G_ab(a)) − a‖₁] + E_b[‖G_ab(G_ba(b)) − b‖₁]     (eq. 2, λ = 10 per direction)
* ``idt``      (G_ab, 5):   E_b[‖G_ab(b) − b‖₁] + E_a[‖G_ba(a) − a‖₁]                (Taigman et al. 2017)
* ``d_a_real`` (D_a, 0.5):  E_a[(D_a(a) − 1)²];   ``d_a_fake`` (D_a, 0.5): E[D_a(pool_a(G_ba(b)))²]
* ``d_b_real`` (D_b, 0.5):  E_b[(D_b(b) − 1)²];   ``d_b_fake`` (D_b, 0.5): E[D_b(pool_b(G_ab(a)))²]

Why these defaults: the authors weight each cycle direction by λ_A = λ_B = 10 and the identity terms by
λ_identity·λ = 0.5 × 10 = 5; here the identity weight is its own number (5), not a product of two, so tuning
``cycle`` leaves ``idt`` alone. D's loss is (real + fake) × 0.5 "to slow down the rate at which D learns relative to
G" (§4), and D sees fakes from a 50-image history (``pool_size``, blocks/image_pool.py) to reduce oscillation.
``cycle`` and ``idt`` train both generators; their group names G_ab only because a term names one net. Nothing
depends on it: the G step backpropagates the sum over both G groups and steps both G optimizers.

The identity term is computed only when its weight is > 0 (as the authors do) and A and B have the same number of
channels — G_ab(b) is undefined otherwise (the authors assert; we skip, so 1→3-channel tasks train). A skipped
``idt`` is reported as 0. ``recon`` picks the cycle distance (L1 here; MSE for DiscoGAN).

Optimizers: one Adam (lr 2e-4, β (0.5, 0.999)) per network, keyed by its ``nets`` name. The authors use one Adam over
G_A+G_B and one over D_A+D_B; Adam's update is per-parameter, so per-network optimizers take the identical steps
(and the trainer can schedule and checkpoint each net alone). Run length ``n_epochs`` + ``n_epochs_decay`` = 200
epochs at global batch 1, an epoch being one pass over the larger domain (the authors' unaligned loader). The rate is
the authors' ``linear`` policy exactly, as pix2pix's (``schedules.linear_decay``: stepped at the start of each epoch,
so epoch 100 of 200 is already decayed and epoch 200 trains at 0); ``lr_policy="constant"`` keeps it fixed (the
presets below). ``train_step`` follows ``optimize_parameters``: forward both cycles; G step with both
Ds frozen (unwrapped, requires_grad off); then the D step on pooled fakes. With ``n_critic`` > 1 (DualGAN's WGAN)
the G step runs on every ``n_critic``-th step only, so the critics take ``n_critic`` steps per G step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch

from i2i_models import losses
from i2i_models.base import I2IModel, LossTerm, RunLength, StepOutput, unwrap
from i2i_models.blocks.discriminators import PatchDiscriminator
from i2i_models.blocks.image_pool import ImagePool
from i2i_models.blocks.init import init_weights
from i2i_models.blocks.norms import Norm
from i2i_models.blocks.resnet import ResnetGenerator
from i2i_models.registry import register_model
from i2i_models.schedules import linear_decay

Direction = Literal["a2b", "b2a"]


@dataclass(frozen=True, kw_only=True)
class CycleGANConfig:
    image_size: int = 256
    in_channels: int = 3  # domain A
    out_channels: int = 3  # domain B
    ngf: int = 64
    ndf: int = 64
    n_blocks: int | None = None  # None: 9 for image_size ≥ 256 (resnet_9blocks), else 6 (the authors' 128 px choice)
    norm: Norm = "instance"
    dropout: bool = False  # the authors' CycleGAN default (--no_dropout)
    n_layers_D: int = 3
    gan_mode: losses.GanKind = "lsgan"
    recon: Literal["l1", "mse"] = "l1"  # distance of the cycle term
    pool_size: int = 50  # 0: D sees only the current fakes
    init_gain: float = 0.02
    optimizer: Literal["adam", "rmsprop"] = "adam"
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    weight_decay: float = 0.0
    clip_D: float | None = None  # WGAN weight clipping: D parameters clamped to [−c, c] after each D step
    n_critic: int = 1  # D steps per G step
    n_epochs: int = 100
    n_epochs_decay: int = 100
    lr_policy: Literal["linear", "constant"] = "linear"  # linear: the authors' decay over n_epochs_decay

    def __post_init__(self) -> None:
        if self.gan_mode == "wgan" and not self.clip_D:
            raise ValueError("gan_mode 'wgan' needs its Lipschitz constraint: set clip_D (e.g. 0.01)")
        if self.n_critic < 1:
            raise ValueError(f"n_critic must be ≥ 1, got {self.n_critic}")

    def blocks(self) -> int:
        if self.n_blocks is not None:
            return self.n_blocks
        return 9 if self.image_size >= 256 else 6


@register_model("cyclegan")
class CycleGAN(I2IModel):
    data_mode = "unpaired"
    loss_terms = (
        LossTerm("gan_ab", 1.0, "G_ab", "G_ab(a) should pass D_b: (D_b(G_ab(a)) − 1)² for LSGAN"),
        LossTerm("gan_ba", 1.0, "G_ba", "G_ba(b) should pass D_a: (D_a(G_ba(b)) − 1)² for LSGAN"),
        LossTerm("cycle", 10.0, "G_ab", "d(G_ba(G_ab(a)), a) + d(G_ab(G_ba(b)), b), d = L1 (recon); trains both Gs"),
        LossTerm("idt", 5.0, "G_ab", "‖G_ab(b) − b‖₁ + ‖G_ba(a) − a‖₁ (0.5 × cycle's 10); trains both Gs"),
        LossTerm("d_a_real", 0.5, "D_a", "D_a on real a: (D_a(a) − 1)² for LSGAN"),
        LossTerm("d_a_fake", 0.5, "D_a", "D_a on pooled G_ba(b): D_a(·)² for LSGAN"),
        LossTerm("d_b_real", 0.5, "D_b", "D_b on real b: (D_b(b) − 1)² for LSGAN"),
        LossTerm("d_b_fake", 0.5, "D_b", "D_b on pooled G_ab(a): D_b(·)² for LSGAN"),
    )
    inference_nets = ("G_ab", "G_ba")
    Config = CycleGANConfig

    def __init__(self, config: CycleGANConfig, *, loss_weights=None):
        super().__init__(config, loss_weights=loss_weights)
        c = config
        for name, (c_in, c_out) in {"G_ab": (c.in_channels, c.out_channels),
                                    "G_ba": (c.out_channels, c.in_channels)}.items():
            G = ResnetGenerator(c_in, c_out, ngf=c.ngf, n_blocks=c.blocks(), norm=c.norm, dropout=c.dropout)
            self.nets[name] = init_weights(G, gain=c.init_gain)
        for name, channels in {"D_a": c.in_channels, "D_b": c.out_channels}.items():
            D = PatchDiscriminator(channels, ndf=c.ndf, n_layers=c.n_layers_D, norm=c.norm)
            self.nets[name] = init_weights(D, gain=c.init_gain)
        self.pool_a, self.pool_b = ImagePool(c.pool_size), ImagePool(c.pool_size)  # fakes of A (for D_a), of B

    @property
    def identity_on(self) -> bool:
        """Whether ``idt`` is computed: weight > 0 and A, B have the same channel count (else G_ab(b) is undefined)."""
        return self.loss_weights["idt"] > 0 and self.config.in_channels == self.config.out_channels

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config

        def make(params) -> torch.optim.Optimizer:
            if c.optimizer == "adam":
                return torch.optim.Adam(params, lr=c.lr, betas=(c.beta1, c.beta2), weight_decay=c.weight_decay)
            # RMSProp with decay 0.9, as DualGAN's TensorFlow code (tf.train.RMSPropOptimizer(lr, decay=0.9))
            return torch.optim.RMSprop(params, lr=c.lr, alpha=0.9, weight_decay=c.weight_decay)

        return {name: make(net.parameters()) for name, net in self.nets.items()}

    def lr_factor(self, *, step: int, epoch: int) -> float:
        c = self.config
        return linear_decay(epoch, c.n_epochs, c.n_epochs_decay) if c.lr_policy == "linear" else 1.0

    @classmethod
    def run_length(cls, config: CycleGANConfig) -> RunLength:
        return RunLength("epochs", config.n_epochs + config.n_epochs_decay)

    # --- training -----------------------------------------------------------------------------------------------
    def train_step(self, batch, step: int) -> StepOutput:
        real_a, real_b = batch["real_a"], batch["real_b"]
        train_g = step % self.config.n_critic == 0
        D_a, D_b = unwrap(self.nets["D_a"]), unwrap(self.nets["D_b"])
        for D in (D_a, D_b):  # G step: Ds frozen and called outside their DDP wrappers (no reducer involved)
            D.requires_grad_(False)
        if train_g:
            G_ab, G_ba = self.nets["G_ab"], self.nets["G_ba"]
        else:  # a critic-only step: the Gs only supply fakes (and logged values), outside their wrappers
            G_ab, G_ba = unwrap(self.nets["G_ab"]), unwrap(self.nets["G_ba"])
        with torch.set_grad_enabled(train_g):
            images = self._cycles(real_a, real_b, G_ab, G_ba)
            g_raw = self._generator_losses(real_a, real_b, images, G_ab, G_ba, D_a, D_b)
        if train_g:
            self.step_nets(("G_ab", "G_ba"), self.weighted(g_raw, "G_ab") + self.weighted(g_raw, "G_ba"))
        for D in (D_a, D_b):
            D.requires_grad_(True)
        d_raw = self._discriminator_step(real_a, real_b, images["fake_a"], images["fake_b"])
        raw = {k: v.detach() for k, v in {**g_raw, **d_raw}.items()}
        shown = {"real_a": real_a, "fake_b": images["fake_b"], "rec_a": images["rec_a"],
                 "real_b": real_b, "fake_a": images["fake_a"], "rec_b": images["rec_b"]}
        return StepOutput(losses=raw, images={k: v.detach().float() for k, v in shown.items()})

    def _cycles(self, real_a, real_b, G_ab, G_ba) -> dict[str, torch.Tensor]:
        """The authors' ``forward``: a → fake_b → rec_a and b → fake_a → rec_b."""
        with self.autocast(real_a):
            fake_b = G_ab(real_a)
            rec_a = G_ba(fake_b)
            fake_a = G_ba(real_b)
            rec_b = G_ab(fake_a)
        return {"fake_b": fake_b, "rec_a": rec_a, "fake_a": fake_a, "rec_b": rec_b}

    def _generator_losses(self, real_a, real_b, images, G_ab, G_ba, D_a, D_b) -> dict[str, torch.Tensor]:
        kind = self.config.gan_mode
        dist = losses.l1 if self.config.recon == "l1" else losses.mse
        a, b = real_a.float(), real_b.float()
        with self.autocast(real_a):
            raw = {
                "gan_ab": losses.adversarial(D_b(images["fake_b"]).float(), True, kind, for_discriminator=False),
                "gan_ba": losses.adversarial(D_a(images["fake_a"]).float(), True, kind, for_discriminator=False),
                "cycle": dist(images["rec_a"].float(), a) + dist(images["rec_b"].float(), b),
            }
            if self.identity_on:
                raw["idt"] = losses.l1(G_ab(real_b).float(), b) + losses.l1(G_ba(real_a).float(), a)
            else:
                raw["idt"] = torch.zeros((), device=real_a.device)
        return raw

    def _discriminator_step(self, real_a, real_b, fake_a, fake_b) -> dict[str, torch.Tensor]:
        """Both Ds on real images and on fakes drawn from the history pools; one backward, both D optimizers."""
        pooled_a = self.pool_a.query(fake_a.float())  # detached
        pooled_b = self.pool_b.query(fake_b.float())
        raw = self._discriminator_losses(real_a, real_b, pooled_a, pooled_b)
        self.step_nets(("D_a", "D_b"), self.weighted(raw, "D_a") + self.weighted(raw, "D_b"))
        if self.config.clip_D:
            with torch.no_grad():
                for name in ("D_a", "D_b"):
                    for p in unwrap(self.nets[name]).parameters():
                        p.clamp_(-self.config.clip_D, self.config.clip_D)
        return raw

    def _discriminator_losses(self, real_a, real_b, fake_a, fake_b) -> dict[str, torch.Tensor]:
        kind = self.config.gan_mode
        D_a, D_b = self.nets["D_a"], self.nets["D_b"]
        with self.autocast(real_a):
            return {
                "d_a_real": losses.adversarial(D_a(real_a).float(), True, kind),
                "d_a_fake": losses.adversarial(D_a(fake_a).float(), False, kind),
                "d_b_real": losses.adversarial(D_b(real_b).float(), True, kind),
                "d_b_fake": losses.adversarial(D_b(fake_b).float(), False, kind),
            }

    # --- inference ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def translate(self, x: torch.Tensor, *, direction: Direction = "a2b", **condition: Any) -> torch.Tensor:
        """A→B with G_ab (``direction="a2b"``, the default) or B→A with G_ba (``"b2a"``)."""
        if condition:
            raise TypeError(f"{self.name}.translate takes only `direction`; unknown condition(s) {sorted(condition)}")
        if direction not in ("a2b", "b2a"):
            raise ValueError(f"direction must be 'a2b' or 'b2a', got {direction!r}")
        name, channels = ("G_ab", self.config.in_channels) if direction == "a2b" else ("G_ba", self.config.out_channels)
        if x.dim() != 4 or x.shape[1] != channels:
            raise ValueError(f"direction {direction!r} takes (N, {channels}, H, W) images, got {tuple(x.shape)}")
        G = unwrap(self.nets[name])
        was_training = G.training
        G.eval()
        try:
            with self.autocast(x):
                return G(x).float()
        finally:
            G.train(was_training)

"""pix2pix — Isola, Zhu, Zhou, Efros. "Image-to-Image Translation with Conditional Adversarial Networks", CVPR 2017.
Authors' code: junyanz/pytorch-CycleGAN-and-pix2pix (models/pix2pix_model.py, models/networks.py).

Data mode: **paired** — ``batch = {"input": x, "target": y}``, images in [-1, 1].

Networks: ``G`` U-Net (``num_downs`` = log2(image_size): unet_256 / unet_128), skip connections, Dropout(0.5) in the
innermost ngf·8 decoder blocks as the noise z; ``D`` 70×70 PatchGAN (n_layers 3) on concat(x, y), 6 channels.
ngf = ndf = 64, batch norm, init N(0, 0.02). Standard config: G 54,413,955 and D 2,768,705 parameters.

Objective (eq. 4), G* = arg min_G max_D L_cGAN(G, D) + λ·L_L1(G):

* ``gan``    (G, weight 1):   L_G = −E[log D(x, G(x))]         (non-saturating; LSGAN: E[(D(x, G(x)) − 1)²])
* ``l1``     (G, weight 100): L_L1 = E[‖y − G(x)‖₁]
* ``d_real`` (D, weight 0.5): −E[log D(x, y)]                  (LSGAN: E[(D(x, y) − 1)²])
* ``d_fake`` (D, weight 0.5): −E[log(1 − D(x, G(x)))]          (LSGAN: E[D(x, G(x))²])

The two D terms carry 0.5 each: the paper divides D's objective by 2 "to slow down the rate at which D learns".
Adam lr 2e-4, β = (0.5, 0.999). Run length: ``n_epochs`` + ``n_epochs_decay`` = 200 epochs (at the authors' global
batch 1). The rate follows the PyTorch code's ``linear`` policy exactly (``schedules.linear_decay``): its scheduler
is stepped at the *start* of every epoch, so epochs 1–99 train at lr, epoch 100 already at lr·100/101, epoch 200 at
0. ``lr_policy="constant"`` is the original Torch code's (phillipi/pix2pix ``train.lua``: ``niter`` epochs at one
rate), which the paper's own runs used.
``train_step`` follows the authors' ``optimize_parameters``: G forward, D step, then G step with D frozen.

Test time. The authors' test script runs G in train mode (no ``--eval``) at batch size 1: dropout on (the paper's
noise z) and each batch-norm layer normalising the one image by its own statistics. Here (``test_norm="sample"``,
the default) every image is normalised by its own statistics whatever the batch (``blocks.norms.BatchNorm2d``), so
translating 16 images at once gives each the output it would get alone, and ``translate`` never updates the running
statistics (the authors' test does; they are not saved there). ``test_norm="running"`` uses the running averages
instead (the authors' ``--eval``). ``test_time_dropout`` keeps dropout on at test time (the paper; default) or off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from i2i_models import losses
from i2i_models.base import I2IModel, LossTerm, RunLength, StepOutput, unwrap
from i2i_models.blocks.discriminators import PatchDiscriminator, PixelDiscriminator
from i2i_models.blocks.init import init_weights
from i2i_models.blocks.norms import BatchNorm2d, Norm
from i2i_models.blocks.unet import UnetGenerator
from i2i_models.registry import register_model
from i2i_models.schedules import linear_decay


@dataclass(frozen=True, kw_only=True)
class Pix2PixConfig:
    image_size: int = 256
    in_channels: int = 3
    out_channels: int = 3
    ngf: int = 64
    ndf: int = 64
    num_downs: int | None = None  # None: log2(image_size) (8 = unet_256, 7 = unet_128)
    norm: Norm = "batch"
    dropout: bool = True
    netD: Literal["basic", "pixel"] = "basic"
    n_layers_D: int = 3
    gan_mode: Literal["vanilla", "lsgan"] = "vanilla"
    init_gain: float = 0.02
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    n_epochs: int = 100
    n_epochs_decay: int = 100
    # linear: the PyTorch code's policy (decay over n_epochs_decay); constant: the Torch code's, that the paper's
    # runs used (e.g. edges2shoes: 15 epochs at one rate)
    lr_policy: Literal["linear", "constant"] = "linear"
    test_time_dropout: bool = True  # the paper's test mode: dropout on at test time
    # test-time batch norm: "sample" = each image's own statistics (the authors' batch-1 test in train mode, for any
    # batch); "running" = the running averages (eval mode, the authors' --eval)
    test_norm: Literal["sample", "running"] = "sample"

    def depth(self) -> int:
        if self.num_downs is not None:
            return self.num_downs
        if self.image_size & (self.image_size - 1):
            raise ValueError(f"image_size must be a power of two for the U-Net, got {self.image_size}")
        return int(math.log2(self.image_size))


@register_model("pix2pix")
class Pix2Pix(I2IModel):
    data_mode = "paired"
    loss_terms = (
        LossTerm("gan", 1.0, "G", "−log D(x, G(x)): fool the conditional discriminator"),
        LossTerm("l1", 100.0, "G", "‖y − G(x)‖₁: stay close to the target"),
        LossTerm("d_real", 0.5, "D", "−log D(x, y)"),
        LossTerm("d_fake", 0.5, "D", "−log(1 − D(x, G(x)))"),
    )
    inference_nets = ("G",)
    Config = Pix2PixConfig

    def __init__(self, config: Pix2PixConfig, *, loss_weights=None):
        super().__init__(config, loss_weights=loss_weights)
        c = config
        self.nets["G"] = init_weights(UnetGenerator(c.in_channels, c.out_channels, c.depth(), ngf=c.ngf,
                                                    norm=c.norm, dropout=c.dropout), gain=c.init_gain)
        d_in = c.in_channels + c.out_channels  # D sees (input, output) pairs
        D = (PatchDiscriminator(d_in, ndf=c.ndf, n_layers=c.n_layers_D, norm=c.norm) if c.netD == "basic"
             else PixelDiscriminator(d_in, ndf=c.ndf, norm=c.norm))
        self.nets["D"] = init_weights(D, gain=c.init_gain)

    def configure_optimizers(self):
        betas = (self.config.beta1, self.config.beta2)
        return {g: torch.optim.Adam(self.nets[g].parameters(), lr=self.config.lr, betas=betas) for g in ("G", "D")}

    def lr_factor(self, *, step: int, epoch: int) -> float:
        """The authors' ``linear`` policy, stepped at the start of each epoch (see the module docstring)."""
        c = self.config
        return linear_decay(epoch, c.n_epochs, c.n_epochs_decay) if c.lr_policy == "linear" else 1.0

    @classmethod
    def run_length(cls, config: Pix2PixConfig) -> RunLength:
        return RunLength("epochs", config.n_epochs + config.n_epochs_decay)

    def train_step(self, batch, step: int) -> StepOutput:
        real_a, real_b = batch["input"], batch["target"]
        G, D = self.nets["G"], self.nets["D"]
        kind = self.config.gan_mode
        with self.autocast(real_a):
            fake_b = G(real_a)
        # D step: real pairs vs (detached) fake pairs
        D.requires_grad_(True)
        with self.autocast(real_a):
            d_raw = {
                "d_fake": losses.adversarial(D(torch.cat([real_a, fake_b.detach()], 1)).float(), False, kind),
                "d_real": losses.adversarial(D(torch.cat([real_a, real_b], 1)).float(), True, kind),
            }
        self.step_optimizer(self.optimizers["D"], self.weighted(d_raw, "D"))
        # G step: D frozen and called outside its DDP wrapper (no reducer involved, no gradient for D)
        D_plain = unwrap(D).requires_grad_(False)
        with self.autocast(real_a):
            g_raw = {
                "gan": losses.adversarial(D_plain(torch.cat([real_a, fake_b], 1)).float(), True, kind,
                                          for_discriminator=False),
                "l1": losses.l1(fake_b.float(), real_b.float()),
            }
        self.step_optimizer(self.optimizers["G"], self.weighted(g_raw, "G"))
        D_plain.requires_grad_(True)
        raw = {k: v.detach() for k, v in {**d_raw, **g_raw}.items()}
        return StepOutput(losses=raw, images={"real_a": real_a.detach(), "fake_b": fake_b.detach().float(),
                                              "real_b": real_b.detach()})

    @torch.no_grad()
    def translate(self, x: torch.Tensor, **condition) -> torch.Tensor:
        if condition:
            raise TypeError(f"pix2pix takes no conditions, got {sorted(condition)}")
        G = unwrap(self.nets["G"])
        modes = {m: m.training for m in G.modules()}
        G.eval()  # batch norm reads (running) or ignores (per-sample) its buffers, never updates them
        for m in G.modules():
            if isinstance(m, BatchNorm2d):
                m.per_sample = self.config.test_norm == "sample"
            elif isinstance(m, nn.Dropout):
                m.train(self.config.test_time_dropout)
        try:
            with self.autocast(x):
                return G(x).float()
        finally:
            for m, mode in modes.items():
                m.train(mode)
                if isinstance(m, BatchNorm2d):
                    m.per_sample = False


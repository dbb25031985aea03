"""GAN — Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014, with the DCGAN networks of Radford, Metz &
Chintala, "Unsupervised Representation Learning with Deep Convolutional GANs", ICLR 2016. Reference code:
pytorch/examples ``dcgan/main.py`` (whose networks and training loop this follows).

Data mode: **single** — ``batch = {"image": x}``, images in [-1, 1].

Networks: ``G`` z → x: the DCGAN generator, 3,576,704 parameters (nz 100, ngf 64, 64 px); ``D`` x → logit: the
DCGAN discriminator, 2,765,568 (ndf 64) — the reference's counts exactly (convs without bias).

Objective (the seed): min_G max_D E_{x ~ p_data}[log D(x)] + E_{z ~ p(z)}[log(1 − D(G(z)))], p(z) = N(0, I).
G minimises the non-saturating −log D(G(z)) instead of log(1 − D(G(z))) (Goodfellow et al. §3; DCGAN's code):

* ``gan``    (group G, weight 1): −E_z log D(G(z))
* ``d_real`` (group D, weight 1): −E_x log D(x)
* ``d_fake`` (group D, weight 1): −E_z log(1 − D(G(z)))

D(·) = σ(logit); every term is a binary cross-entropy with logits, averaged over the batch. ``train_step`` is the
reference loop: D step on real x and the detached G(z), then the G step on the same G(z) against the updated D.
Adam lr 2e-4, β (0.5, 0.999); 25 epochs (the reference's ``--niter 25``). A GAN has no encoder: ``encodes`` is
False and ``translate`` raises; ``sample(n, seed=…)`` = G(z), z ~ N(0, I).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from i2i_models import losses
from i2i_models.base import LossTerm, StepOutput
from i2i_models.registry import register_model
from i2i_models.single_base import SingleDomainConfig, SingleDomainModel, dcgan_discriminator, dcgan_generator


@dataclass(frozen=True, kw_only=True)
class GANConfig(SingleDomainConfig):
    pass


@register_model("gan")
class GAN(SingleDomainModel):
    loss_terms = (
        LossTerm("gan", 1.0, "G", "−log D(G(z)): the non-saturating generator loss"),
        LossTerm("d_real", 1.0, "D", "−log D(x)"),
        LossTerm("d_fake", 1.0, "D", "−log(1 − D(G(z)))"),
    )
    inference_nets = ("G",)
    encodes = False
    Config = GANConfig
    config: GANConfig

    def __init__(self, config: GANConfig, *, loss_weights=None):
        super().__init__(config, loss_weights=loss_weights)
        c = config
        self.nets["G"] = dcgan_generator(c)
        self.nets["D"] = dcgan_discriminator(c)

    def train_step(self, batch, step: int) -> StepOutput:
        x = batch["image"]
        G, D = self.nets["G"], self.nets["D"]
        z = self.draw_prior(x.size(0), device=x.device)
        with self.autocast(x):
            fake = G(z)
            d_raw = {"d_real": losses.adversarial(D(x).float(), True),
                     "d_fake": losses.adversarial(D(fake.detach()).float(), False)}
        self.step_nets(("D",), self.weighted(d_raw, "D"))
        with self._frozen("D") as D_plain, self.autocast(x):  # G step against the updated D, no gradient into D
            g_raw = {"gan": losses.adversarial(D_plain(fake).float(), True, for_discriminator=False)}
        self.step_nets(("G",), self.weighted(g_raw, "G"))
        return StepOutput(losses={k: v.detach() for k, v in {**d_raw, **g_raw}.items()},
                          images={"real": x.detach(), "sample": fake.detach().float()})

    def translate(self, x: torch.Tensor, **condition) -> torch.Tensor:
        raise NotImplementedError("model 'gan' has no encoder, so it cannot reconstruct or translate an image; "
                                  "draw new images with sample(n, seed=...)")

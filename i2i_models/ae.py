"""Autoencoder — the deterministic baseline the survey seed opens with (e.g. Hinton & Salakhutdinov, Science 2006;
here with the DCGAN networks of ``blocks.dcgan``).

Data mode: **single** — ``batch = {"image": x}``, images in [-1, 1].

Networks: ``E`` x → z (N, nz): the DCGAN trunk and a 4×4 valid conv with bias (3,576,676 parameters at nz 100,
ndf 64, 64 px); ``G`` z → x' (N, 3, 64, 64): the DCGAN generator (3,576,704).

Objective (the seed): L_AE = E_x[‖x − x'‖²], x' = G(E(x)):

* ``recon`` (group G, weight 1): E_x ‖x − G(E(x))‖², the squared error summed over each image's pixels, averaged
  over the batch; one backward trains E and G together (their two Adams step after it).

Adam lr 2e-4, β (0.5, 0.999) and 25 epochs: the DCGAN settings shared by the single-domain families (``single_base``);
the seed gives no training recipe for a plain AE. ``translate(x)`` = G(E(x)); ``sample(n, seed=…)`` decodes
z ~ N(0, I) — an AE puts no prior on its code, so its samples are only as good as the code happens to be Gaussian
(the point AAE and VAE address).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from i2i_models import losses
from i2i_models.base import LossTerm, StepOutput
from i2i_models.registry import register_model
from i2i_models.single_base import SingleDomainConfig, SingleDomainModel, dcgan_encoder, dcgan_generator


@dataclass(frozen=True, kw_only=True)
class AEConfig(SingleDomainConfig):
    pass


@register_model("ae")
class AE(SingleDomainModel):
    loss_terms = (LossTerm("recon", 1.0, "G", "E‖x − G(E(x))‖²: trains E and G"),)
    inference_nets = ("E", "G")
    Config = AEConfig
    config: AEConfig

    def __init__(self, config: AEConfig, *, loss_weights=None):
        super().__init__(config, loss_weights=loss_weights)
        c = config
        self.nets["E"] = dcgan_encoder(c)
        self.nets["G"] = dcgan_generator(c)

    def train_step(self, batch, step: int) -> StepOutput:
        x = batch["image"]
        with self.autocast(x):
            x_rec = self.nets["G"](self.nets["E"](x))
        raw = {"recon": losses.sum_squared_error(x_rec, x)}
        self.step_nets(("E", "G"), self.weighted(raw, "G"))
        return StepOutput(losses={k: v.detach() for k, v in raw.items()},
                          images={"real": x.detach(), "recon": x_rec.detach().float()})

    def reconstruct(self, x: torch.Tensor, E: nn.Module, G: nn.Module) -> torch.Tensor:
        return G(E(x))

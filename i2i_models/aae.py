"""Adversarial autoencoder — Makhzani, Shlens, Jaitly, Goodfellow, Frey, "Adversarial Autoencoders", ICLR 2016
workshop (arXiv:1511.05644). DCGAN networks (``blocks.dcgan``) for the autoencoder.

Data mode: **single** — ``batch = {"image": x}``, images in [-1, 1].

Networks: ``E`` x → z (deterministic; the paper's q(z|x) "deterministic" choice): 3,576,676 parameters (nz 100,
ndf 64, 64 px); ``G`` z → x: 3,576,704; ``D`` z → logit, the paper's MLP on codes (two hidden layers of 1000 units,
ReLU): 1,103,001 at nz 100.

Objective (the seed): L_AAE = L_AE + L_GAN, L_AE = E_x ‖x − x'‖², and an adversarial game on the code between D and
E (the generator of q(z) = ∫ q(z|x) p_data(x) dx) that matches q(z) to a chosen prior p(z): ``prior`` "gaussian"
N(0, I) (default) or "uniform" U(−1, 1)^nz. The paper labels prior samples positive; the seed writes the same game
with the labels swapped (E_q log D(z) + E_p log(1 − D(z))), which is the same game for D' = 1 − D.

* ``recon``    (group G, weight 1): ‖x − G(E(x))‖², summed over pixels, averaged over the batch; trains E and G
* ``gan``      (group E, weight 1): −log D(E(x)): E fools D (non-saturating)
* ``d_prior``  (group D, weight 1): −log D(z'), z' ~ p(z)
* ``d_code``   (group D, weight 1): −log(1 − D(E(x)))

``train_step`` is the paper's two phases on each mini-batch: the reconstruction phase (E and G step on ``recon``),
then the regularisation phase — D learns to tell prior samples from codes of the updated E, then E (the generator)
steps on ``gan`` against the updated D. The paper's SGD with momentum is replaced by the shared DCGAN settings (Adam
2e-4, β (0.5, 0.999), 25 epochs); each network has one Adam (E's steps in both phases). ``translate(x)`` = G(E(x));
``sample(n, seed=…)`` = G(z), z ~ p(z).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from i2i_models import losses
from i2i_models.base import LossTerm, StepOutput
from i2i_models.blocks.dcgan import MLP
from i2i_models.blocks.init import init_weights
from i2i_models.registry import register_model
from i2i_models.single_base import Prior, SingleDomainConfig, SingleDomainModel, dcgan_encoder, dcgan_generator


@dataclass(frozen=True, kw_only=True)
class AAEConfig(SingleDomainConfig):
    prior: Prior = "gaussian"  # p(z): N(0, I) or U(−1, 1)^nz
    d_hidden: int = 1000  # the paper's code discriminator: nz → 1000 → 1000 → 1, ReLU


@register_model("aae")
class AAE(SingleDomainModel):
    loss_terms = (
        LossTerm("recon", 1.0, "G", "‖x − G(E(x))‖²: the reconstruction phase, trains E and G"),
        LossTerm("gan", 1.0, "E", "−log D(E(x)): E fools the code discriminator"),
        LossTerm("d_prior", 1.0, "D", "−log D(z'), z' ~ p(z)"),
        LossTerm("d_code", 1.0, "D", "−log(1 − D(E(x)))"),
    )
    inference_nets = ("E", "G")
    Config = AAEConfig
    config: AAEConfig

    def __init__(self, config: AAEConfig, *, loss_weights=None):
        super().__init__(config, loss_weights=loss_weights)
        c = config
        if c.prior not in ("gaussian", "uniform"):
            raise ValueError(f"prior must be 'gaussian' or 'uniform', got {c.prior!r}")
        self.nets["E"] = dcgan_encoder(c)
        self.nets["G"] = dcgan_generator(c)
        self.nets["D"] = init_weights(MLP(c.nz, (c.d_hidden, c.d_hidden), 1, activation="relu"), gain=c.init_gain)

    def train_step(self, batch, step: int) -> StepOutput:
        x = batch["image"]
        E, G, D = self.nets["E"], self.nets["G"], self.nets["D"]
        with self.autocast(x):  # reconstruction phase
            x_rec = G(E(x))
        raw = {"recon": losses.sum_squared_error(x_rec, x)}
        self.step_nets(("E", "G"), self.weighted(raw, "G"))
        # regularisation phase: D on prior samples vs codes of the updated E, then E against the updated D
        z_prior = self.draw_prior(x.size(0), device=x.device)
        with self.autocast(x):
            z = E(x)
            d_raw = {"d_prior": losses.adversarial(D(z_prior).float(), True),
                     "d_code": losses.adversarial(D(z.detach()).float(), False)}
        self.step_nets(("D",), self.weighted(d_raw, "D"))
        with self._frozen("D") as D_frozen, self.autocast(x):
            raw["gan"] = losses.adversarial(D_frozen(z).float(), True, for_discriminator=False)
        self.step_nets(("E",), self.weighted(raw, "E"))
        return StepOutput(losses={k: v.detach() for k, v in {**raw, **d_raw}.items()},
                          images={"real": x.detach(), "recon": x_rec.detach().float()})

    def reconstruct(self, x: torch.Tensor, E: nn.Module, G: nn.Module) -> torch.Tensor:
        return G(E(x))

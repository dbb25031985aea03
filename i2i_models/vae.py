"""VAE — Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014; Rezende, Mohamed & Wierstra, "Stochastic
Backpropagation and Approximate Inference in Deep Generative Models", ICML 2014. DCGAN networks (``blocks.dcgan``).

Data mode: **single** — ``batch = {"image": x}``, images in [-1, 1].

Networks: ``E`` x → (μ, log σ²) (N, 2·nz): the DCGAN trunk and a 4×4 valid conv with bias (4,395,976 parameters at
nz 100, ndf 64, 64 px); ``G`` z → x (N, 3, 64, 64): the DCGAN generator (3,576,704).

Objective (the seed), minimised: L_VAE = KL(q_φ(z|x) ‖ p(z)) − E_{z ~ q_φ(z|x)}[log p_θ(x|z)], with
q_φ(z|x) = N(μ, σ² I), p(z) = N(0, I), and one reparameterised sample z = μ + σ ⊙ ε, ε ~ N(0, I) per image:

* ``kl``    (group E, weight 1): ½ Σ_i (μ_i² + σ_i² − log σ_i² − 1), summed over the code, averaged over the batch —
  the closed form of Kingma & Welling's appendix B.
* ``recon`` (group G, weight 1): ‖x − G(z)‖², summed over pixels, averaged over the batch. This is −log p_θ(x|z)
  up to a constant for a Gaussian decoder p_θ(x|z) = N(G(z), ½ I); the weight w sets the decoder's variance,
  σ_x² = 1 / (2w). Trains G and, through z, E.

One backward of the (weighted) negative ELBO trains E and G together, as the paper's Algorithm 1 (one gradient of
the estimator for (θ, φ)). The paper optimises with Adagrad; Adam 2e-4, β (0.5, 0.999) and 25 epochs are the DCGAN
settings shared by the single-domain families. ``translate(x)`` = G(μ(x)) (the posterior mean: deterministic);
``sample(n, seed=…)`` = G(z), z ~ N(0, I).
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
class VAEConfig(SingleDomainConfig):
    pass


def gaussian_encoder(c: SingleDomainConfig) -> nn.Module:
    """E: x → (μ, log σ²) concatenated, (N, 2·nz)."""
    return dcgan_encoder(c, 2 * c.nz)


def reparameterise(stats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(z, μ, log σ²) from E's output (N, 2·nz): z = μ + exp(½ log σ²) ⊙ ε, ε ~ N(0, I)."""
    mu, logvar = stats.float().chunk(2, dim=1)
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu), mu, logvar


@register_model("vae")
class VAE(SingleDomainModel):
    loss_terms = (
        LossTerm("kl", 1.0, "E", "KL(q(z|x) ‖ N(0, I)) = ½ Σ (μ² + σ² − log σ² − 1)"),
        LossTerm("recon", 1.0, "G", "‖x − G(z)‖², z = μ + σε: −log p(x|z) of N(G(z), ½I); trains G and E"),
    )
    inference_nets = ("E", "G")
    Config = VAEConfig
    config: VAEConfig

    def __init__(self, config: VAEConfig, *, loss_weights=None):
        super().__init__(config, loss_weights=loss_weights)
        c = config
        self.nets["E"] = gaussian_encoder(c)
        self.nets["G"] = dcgan_generator(c)

    def train_step(self, batch, step: int) -> StepOutput:
        x = batch["image"]
        with self.autocast(x):
            z, mu, logvar = reparameterise(self.nets["E"](x))
            x_rec = self.nets["G"](z)
        raw = {"kl": losses.kl_standard_normal(mu, logvar), "recon": losses.sum_squared_error(x_rec, x)}
        self.step_nets(("E", "G"), self.weighted(raw, "E") + self.weighted(raw, "G"))
        return StepOutput(losses={k: v.detach() for k, v in raw.items()},
                          images={"real": x.detach(), "recon": x_rec.detach().float()})

    def reconstruct(self, x: torch.Tensor, E: nn.Module, G: nn.Module) -> torch.Tensor:
        return G(E(x).chunk(2, dim=1)[0])  # z = μ(x)

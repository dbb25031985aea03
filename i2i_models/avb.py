"""Adversarial Variational Bayes — Mescheder, Nowozin, Geiger, "Adversarial Variational Bayes: Unifying Variational
Autoencoders and Generative Adversarial Networks", ICML 2017. Authors' code: LMescheder/AdversarialVariationalBayes
(``avb/avb/models/conv0.py``: encoder and adversary; ``avb/avb/train.py``). DCGAN networks (``blocks.dcgan``).

Data mode: **single** — ``batch = {"image": x}``, images in [-1, 1].

Networks (nz 100, ndf = ngf 64, eps_dim 100, 64 px):

* ``E`` the noise-input encoder z = z_φ(x, ε), ε ~ N(0, I_eps_dim): the DCGAN trunk where every stage adds a
  learned linear map of ε per channel after its conv (the authors' ``add_linear``), then a 4×4 valid conv to z:
  3,672,676 parameters. q_φ(z|x) is implicit — no density, only samples.
* ``G`` z → x, the DCGAN generator: 3,576,704.
* ``T`` the adversary T(x, z), the authors' layout: T(x, z) = θ(x)ᵀ s(z) + T_x(x) + T_z(z), with θ(x) = ELU(linear
  of a DCGAN trunk) ∈ R^t_dim, s(z) = an MLP (4 hidden layers of ``t_hidden``, LeakyReLU 0.2) ∈ R^t_dim, T_x = a
  DCGAN discriminator, T_z = an MLP to one value: 21,467,649 at t_hidden = t_dim = 1024 (the authors' inner
  product has 8192 dimensions: their θ alone would hold 67M parameters at 64 px).

Objective (the seed, σ(t) = 1 / (1 + e^−t)):

  max_T  E_{p_data(x)} E_{q_φ(z|x)} log σ(T(x, z)) + E_{p_data(x)} E_{p(z)} log(1 − σ(T(x, z))),
  max_{θ, φ}  E_{p_data(x)} E_ε [−T(x, z_φ(x, ε)) + log p_θ(x | z_φ(x, ε))].

At the optimum T*(x, z) = log q_φ(z|x) − log p(z), so E[T] is the KL term of the ELBO. Minimised here:

* ``kl``           (group E, weight 1): E[T(x, z_φ(x, ε))], T frozen — the adversary's estimate of the KL; trains E
* ``recon``        (group G, weight 1): −log p_θ(x|z) = ‖x − G(z)‖² + const (Gaussian decoder N(G(z), ½ I); the
  weight sets the variance as in ``vae``); trains G and, through z, E
* ``t_posterior``  (group T, weight 1): −log σ(T(x, z)), z = z_φ(x, ε) (detached)
* ``t_prior``      (group T, weight 1): −log(1 − σ(T(x, z'))), z' ~ p(z) = N(0, I)

``train_step`` is the paper's Algorithm 1 (all three updates from the same samples): the E/G step with T frozen,
then the T step on the same (x, z) pairs, so T's loss is taken with the T that the E/G step saw. Adaptive contrast
(the paper's §4) is not implemented. The authors' code trains with Adam, β1 0.5, its rate a per-run setting; here
the DCGAN settings shared by the single-domain families (Adam 2e-4, β (0.5, 0.999), 25 epochs).
``translate(x)`` = G(z_φ(x, 0)): the noise fixed at its mean ε = 0, deterministic; ``sample(n, seed=…)`` = G(z),
z ~ N(0, I).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from i2i_models import losses
from i2i_models.base import LossTerm, StepOutput
from i2i_models.blocks.dcgan import MLP, DCGANDiscriminator, DCGANEncoder, DCGANTrunk
from i2i_models.blocks.init import init_weights
from i2i_models.registry import register_model
from i2i_models.single_base import SingleDomainConfig, SingleDomainModel, dcgan_generator


@dataclass(frozen=True, kw_only=True)
class AVBConfig(SingleDomainConfig):
    eps_dim: int = 100  # ε's dimension (the encoder's noise input)
    t_hidden: int = 1024  # width of the adversary's z MLPs (the authors': 4 × 1024)
    t_dim: int = 1024  # dimension of the inner product θ(x)ᵀ s(z) (the authors': 8192)


class AVBAdversary(nn.Module):
    """T(x, z) = θ(x)ᵀ s(z) + T_x(x) + T_z(z) → (N,) (the authors' conv0 adversary, on DCGAN trunks)."""

    def __init__(self, c: AVBConfig):
        super().__init__()
        self.theta = DCGANTrunk(c.channels, ndf=c.ndf, image_size=c.image_size)
        self.theta_fc = nn.Linear(self.theta.out_channels * 16, c.t_dim)  # the trunk ends at 4×4
        self.s = MLP(c.nz, (c.t_hidden,) * 4, c.t_dim)
        self.x_only = DCGANDiscriminator(c.channels, ndf=c.ndf, image_size=c.image_size)
        self.z_only = MLP(c.nz, (c.t_hidden,) * 4, 1)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        theta = F.elu(self.theta_fc(self.theta(x).flatten(1)))
        return (theta * self.s(z)).sum(1) + self.x_only(x) + self.z_only(z).flatten()


@register_model("avb")
class AVB(SingleDomainModel):
    loss_terms = (
        LossTerm("kl", 1.0, "E", "T(x, z_φ(x, ε)): the adversary's estimate of log q(z|x) − log p(z)"),
        LossTerm("recon", 1.0, "G", "‖x − G(z_φ(x, ε))‖²: −log p(x|z) of N(G(z), ½I); trains G and E"),
        LossTerm("t_posterior", 1.0, "T", "−log σ(T(x, z)), z ~ q(z|x)"),
        LossTerm("t_prior", 1.0, "T", "−log(1 − σ(T(x, z))), z ~ p(z)"),
    )
    inference_nets = ("E", "G")
    Config = AVBConfig
    config: AVBConfig

    def __init__(self, config: AVBConfig, *, loss_weights=None):
        super().__init__(config, loss_weights=loss_weights)
        c = config
        self.nets["E"] = init_weights(DCGANEncoder(c.channels, c.nz, ndf=c.ndf, image_size=c.image_size,
                                                   noise_dim=c.eps_dim), gain=c.init_gain)
        self.nets["G"] = dcgan_generator(c)
        self.nets["T"] = init_weights(AVBAdversary(c), gain=c.init_gain)

    def train_step(self, batch, step: int) -> StepOutput:
        x = batch["image"]
        E, G, T = self.nets["E"], self.nets["G"], self.nets["T"]
        eps = torch.randn(x.size(0), self.config.eps_dim, device=x.device)
        with self.autocast(x):
            z = E(x, eps)
            x_rec = G(z)
            with self._frozen("T") as T_frozen:
                raw = {"kl": T_frozen(x, z).float().mean(), "recon": losses.sum_squared_error(x_rec, x)}
        self.step_nets(("E", "G"), self.weighted(raw, "E") + self.weighted(raw, "G"))
        z_prior = self.draw_prior(x.size(0), device=x.device)
        with self.autocast(x):  # T on the same pairs, with the T that the E/G step saw
            t_raw = {"t_posterior": losses.adversarial(T(x, z.detach()).float(), True),
                     "t_prior": losses.adversarial(T(x, z_prior).float(), False)}
        self.step_nets(("T",), self.weighted(t_raw, "T"))
        return StepOutput(losses={k: v.detach() for k, v in {**raw, **t_raw}.items()},
                          images={"real": x.detach(), "recon": x_rec.detach().float()})

    def reconstruct(self, x: torch.Tensor, E: nn.Module, G: nn.Module) -> torch.Tensor:
        return G(E(x, torch.zeros(x.size(0), self.config.eps_dim, device=x.device)))  # ε fixed at its mean

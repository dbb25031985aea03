"""ALI / BiGAN — Dumoulin, Belghazi, Poole, Mastropietro, Lamb, Arjovsky, Courville, "Adversarially Learned
Inference", ICLR 2017; Donahue, Krähenbühl, Darrell, "Adversarial Feature Learning", ICLR 2017 (the same model).
Authors' code: IshmaelBelghazi/ALI. DCGAN networks (``blocks.dcgan``).

Data mode: **single** — ``batch = {"image": x}``, images in [-1, 1].

Networks (nz 100, ngf = ndf 64, 64 px):

* ``E`` = G_z, the encoder x → q(z|x) = N(μ, σ² I), z = μ + σ ⊙ ε (ALI's stochastic encoder, reparameterised;
  BiGAN's is deterministic): 4,395,976 parameters.
* ``G`` = G_x, the generator z → x, the DCGAN generator: 3,576,704.
* ``D`` the joint discriminator D(x, z), ALI's layout: D(x) a DCGAN trunk and a 4×4 valid conv to ndf·8 = 512
  features; D(z) two layers of 512 (ALI's 1×1 convs, i.e. linear); D(x, z) on their concatenation: two layers of
  1024, then one logit. Dropout 0.2 on the trunk's output and after every later hidden layer, LeakyReLU 0.2
  (ALI: dropout 0.2 in every layer of D, the conv trunk's too; LeakyReLU 0.2 as DCGAN rather than ALI's 0.01):
  9,366,785.

Objective (the seed): min_{G_x, G_z} max_D E_{q(x)}[log D(x, G_z(x))] + E_{p(z)}[log(1 − D(G_x(z), z))],
p(z) = N(0, I). E and G minimise the non-saturating form (the labels swapped, as ALI's code):

* ``gan_x``  (group G, weight 1): −log D(G_x(z), z): the generator's pairs should look like encoder pairs
* ``gan_z``  (group E, weight 1): −log(1 − D(x, G_z(x))): the encoder's pairs should look like generator pairs
* ``d_real`` (group D, weight 1): −log D(x, G_z(x))
* ``d_fake`` (group D, weight 1): −log(1 − D(G_x(z), z))

``train_step`` is the simultaneous update of ALI's Algorithm 1: the E/G step with D frozen, then the D step on the
same (detached) pairs, with the D that the E/G step saw. ALI trains with Adam lr 1e-4, β1 0.5 (BiGAN: 2e-4, β1
0.5); here the DCGAN settings shared by the single-domain families (Adam 2e-4, β (0.5, 0.999), 25 epochs).
``translate(x)`` = G_x(μ(x)) (the encoder's mean: deterministic); ``sample(n, seed=…)`` = G_x(z), z ~ N(0, I).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from i2i_models import losses
from i2i_models.base import LossTerm, StepOutput
from i2i_models.blocks.dcgan import MLP, DCGANTrunk
from i2i_models.blocks.init import init_weights
from i2i_models.registry import register_model
from i2i_models.single_base import SingleDomainConfig, SingleDomainModel, dcgan_generator
from i2i_models.vae import gaussian_encoder, reparameterise


@dataclass(frozen=True, kw_only=True)
class ALIConfig(SingleDomainConfig):
    d_dropout: float = 0.2  # ALI's dropout in every layer of D


class JointDiscriminator(nn.Module):
    """D(x, z) → one logit per pair (N,): x and z embedded apart, then judged together (ALI's layout)."""

    def __init__(self, c: ALIConfig):
        super().__init__()
        width = c.ndf * 8  # 512: D(x)'s and D(z)'s features
        self.x_trunk = DCGANTrunk(c.channels, ndf=c.ndf, image_size=c.image_size)
        self.x_head = nn.Sequential(nn.Dropout(c.d_dropout), nn.Conv2d(self.x_trunk.out_channels, width, 4, 1, 0),
                                    nn.LeakyReLU(0.2, True), nn.Dropout(c.d_dropout))
        self.z_net = nn.Sequential(MLP(c.nz, (width,), width, dropout=c.d_dropout), nn.LeakyReLU(0.2, True),
                                   nn.Dropout(c.d_dropout))
        self.joint = MLP(2 * width, (2 * width, 2 * width), 1, dropout=c.d_dropout)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h_x = self.x_head(self.x_trunk(x)).flatten(1)
        return self.joint(torch.cat([h_x, self.z_net(z)], dim=1)).flatten()


@register_model("ali")
class ALI(SingleDomainModel):
    loss_terms = (
        LossTerm("gan_x", 1.0, "G", "−log D(G_x(z), z)"),
        LossTerm("gan_z", 1.0, "E", "−log(1 − D(x, G_z(x)))"),
        LossTerm("d_real", 1.0, "D", "−log D(x, G_z(x)): encoder pairs"),
        LossTerm("d_fake", 1.0, "D", "−log(1 − D(G_x(z), z)): generator pairs"),
    )
    inference_nets = ("E", "G")
    Config = ALIConfig
    config: ALIConfig

    def __init__(self, config: ALIConfig, *, loss_weights=None):
        super().__init__(config, loss_weights=loss_weights)
        c = config
        self.nets["E"] = gaussian_encoder(c)
        self.nets["G"] = dcgan_generator(c)
        self.nets["D"] = init_weights(JointDiscriminator(c), gain=c.init_gain)

    def train_step(self, batch, step: int) -> StepOutput:
        x = batch["image"]
        E, G, D = self.nets["E"], self.nets["G"], self.nets["D"]
        with self.autocast(x):
            z_enc, _, _ = reparameterise(E(x))
            z_prior = self.draw_prior(x.size(0), device=x.device)
            x_gen = G(z_prior)
            with self._frozen("D") as D_frozen:
                raw = {"gan_x": losses.adversarial(D_frozen(x_gen, z_prior).float(), True, for_discriminator=False),
                       "gan_z": losses.adversarial(D_frozen(x, z_enc).float(), False, for_discriminator=False)}
        self.step_nets(("E", "G"), self.weighted(raw, "E") + self.weighted(raw, "G"))
        with self.autocast(x):  # D on the same pairs, with the D that the E/G step saw
            d_raw = {"d_real": losses.adversarial(D(x, z_enc.detach()).float(), True),
                     "d_fake": losses.adversarial(D(x_gen.detach(), z_prior).float(), False)}
        self.step_nets(("D",), self.weighted(d_raw, "D"))
        return StepOutput(losses={k: v.detach() for k, v in {**raw, **d_raw}.items()},
                          images={"real": x.detach(), "sample": x_gen.detach().float()})

    def reconstruct(self, x: torch.Tensor, E: nn.Module, G: nn.Module) -> torch.Tensor:
        return G(E(x).chunk(2, dim=1)[0])  # z = μ(x)

"""VAE-GAN — Larsen, Sønderby, Larochelle, Winther, "Autoencoding beyond pixels using a learned similarity metric",
ICML 2016. Authors' code: andersbll/autoencoding_beyond_pixels (``model/aegan.py``, ``celeba_aegan.py``).
DCGAN networks (``blocks.dcgan``).

Data mode: **single** — ``batch = {"image": x}``, images in [-1, 1].

Networks: ``E`` x → (μ, log σ²): 4,395,976 parameters (nz 100, ndf 64, 64 px); ``G`` (the paper's Dec) z → x:
3,576,704; ``D`` (Dis) x → logit, its trunk's stage activations the features Dis_l: 2,765,568.

Objective (the seed): L = L_VAE* + L_GAN, where the VAE's pixel likelihood is replaced by one in D's l-th layer:
L_VAE* = KL(q(z|x) ‖ p(z)) − E_{z ~ q(z|x)} log p(Dis_l(x) | z), L_GAN = log D(x) + log(1 − D(G(z))). The paper
(eq. 9 and Algorithm 1) trains each network on its own part, with z = μ + σε, z_p ~ N(0, I), x̃ = G(z),
x_p = G(z_p), L_GAN = log D(x) + log(1 − D(x̃)) + log(1 − D(x_p)):

  θ_Enc ← −∇(L_prior + L_llike^Dis_l),   θ_Dec ← −∇(γ·L_llike^Dis_l − L_GAN),   θ_Dis ← −∇(−L_GAN)

* ``kl``        (group E, weight 1): L_prior = KL(N(μ, σ²) ‖ N(0, I)) = ½ Σ (μ² + σ² − log σ² − 1)
* ``recon``     (group E, weight 1): L_llike^Dis_l = ‖Dis_l(x) − Dis_l(G(z))‖² (summed over the features,
  averaged over the batch; −log N(Dis_l(x) | Dis_l(x̃), ½ I) + const), its gradient into E only (G frozen)
* ``recon_dec`` (group G, weight γ = 1e-6): the same value, its gradient into G only (z detached)
* ``gan``       (group G, weight 1): −log D(G(z_p)) − log D(G(z)) — the decoder's −L_GAN in the non-saturating
  form; not propagated into E (the paper limits each error signal to the networks of its update rule)
* ``d_real``, ``d_fake``, ``d_recon`` (group D, weight 1 each): −log D(x), −log(1 − D(x_p)), −log(1 − D(x̃))

Dis_l is D's trunk activation after stage ``feature_layer`` (default 3 of the 4 at 64 px: 256 × 8 × 8, the
DCGAN counterpart of the paper's use of a late convolutional layer); the targets Dis_l(x) are constants for E and G
and D is trained on L_GAN only. γ's default 1e-6 is the authors' ``recon_vs_gan_weight`` in their CelebA/STL
scripts. D sees real, reconstructed and sampled images, as the paper (the authors' CelebA script turns
the reconstructed ones off). ``train_step`` makes the paper's simultaneous update: the E/G step with D frozen, then
the D step on the same (detached) images, so D's loss is taken with the D that the E/G step saw. The paper trains
with RMSProp (lr 3e-4); Adam 2e-4, β (0.5, 0.999) and 25 epochs are the DCGAN settings shared by the single-domain
families. ``translate(x)`` = G(μ(x)); ``sample(n, seed=…)`` = G(z), z ~ N(0, I).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from i2i_models import losses
from i2i_models.base import LossTerm, StepOutput
from i2i_models.blocks.dcgan import n_stages
from i2i_models.registry import register_model
from i2i_models.single_base import SingleDomainConfig, SingleDomainModel, dcgan_discriminator, dcgan_generator
from i2i_models.vae import gaussian_encoder, reparameterise


@dataclass(frozen=True, kw_only=True)
class VAEGANConfig(SingleDomainConfig):
    feature_layer: int = 3  # l: Dis_l is the activation after this (1-based) stage of D's trunk


@register_model("vae_gan")
class VAEGAN(SingleDomainModel):
    loss_terms = (
        LossTerm("kl", 1.0, "E", "KL(q(z|x) ‖ N(0, I))"),
        LossTerm("recon", 1.0, "E", "‖Dis_l(x) − Dis_l(G(z))‖², into E (G frozen)"),
        LossTerm("recon_dec", 1e-6, "G", "the same feature reconstruction into G (z detached): the paper's γ"),
        LossTerm("gan", 1.0, "G", "−log D(G(z_p)) − log D(G(z)): the decoder fools D, not into E"),
        LossTerm("d_real", 1.0, "D", "−log D(x)"),
        LossTerm("d_fake", 1.0, "D", "−log(1 − D(G(z_p))): sampled images"),
        LossTerm("d_recon", 1.0, "D", "−log(1 − D(G(z))): reconstructed images"),
    )
    inference_nets = ("E", "G")
    Config = VAEGANConfig
    config: VAEGANConfig

    def __init__(self, config: VAEGANConfig, *, loss_weights=None):
        super().__init__(config, loss_weights=loss_weights)
        c = config
        if not 1 <= c.feature_layer <= n_stages(c.image_size):
            raise ValueError(f"feature_layer must be in 1..{n_stages(c.image_size)} at {c.image_size} px, got "
                             f"{c.feature_layer}")
        self.nets["E"] = gaussian_encoder(c)
        self.nets["G"] = dcgan_generator(c)
        self.nets["D"] = dcgan_discriminator(c)

    def train_step(self, batch, step: int) -> StepOutput:
        x = batch["image"]
        E, G, D = self.nets["E"], self.nets["G"], self.nets["D"]
        l = self.config.feature_layer - 1  # noqa: E741
        with self.autocast(x):
            z, mu, logvar = reparameterise(E(x))
            z_p = self.draw_prior(x.size(0), device=x.device)
            with self._frozen("G") as G_frozen:
                x_rec_for_e = G_frozen(z)  # E's path: the gradient reaches z, not G
            x_rec, x_p = G(z.detach()), G(z_p)  # G's path: nothing reaches E
            with self._frozen("D") as D_frozen:
                target = D_frozen.features(x)[1][l].detach()
                logit_rec, feats_rec = D_frozen.features(x_rec)
                raw = {
                    "kl": losses.kl_standard_normal(mu, logvar),
                    "recon": losses.sum_squared_error(D_frozen.features(x_rec_for_e)[1][l], target),
                    "recon_dec": losses.sum_squared_error(feats_rec[l], target),
                    "gan": (losses.adversarial(D_frozen(x_p).float(), True, for_discriminator=False)
                            + losses.adversarial(logit_rec.float(), True, for_discriminator=False)),
                }
        self.step_nets(("E", "G"), self.weighted(raw, "E") + self.weighted(raw, "G"))
        with self.autocast(x):  # D on the same images, with the D the E/G step saw: the simultaneous update
            d_raw = {"d_real": losses.adversarial(D(x).float(), True),
                     "d_fake": losses.adversarial(D(x_p.detach()).float(), False),
                     "d_recon": losses.adversarial(D(x_rec.detach()).float(), False)}
        self.step_nets(("D",), self.weighted(d_raw, "D"))
        return StepOutput(losses={k: v.detach() for k, v in {**raw, **d_raw}.items()},
                          images={"real": x.detach(), "recon": x_rec.detach().float(), "sample": x_p.detach().float()})

    def reconstruct(self, x: torch.Tensor, E: nn.Module, G: nn.Module) -> torch.Tensor:
        return G(E(x).chunk(2, dim=1)[0])  # z = μ(x)

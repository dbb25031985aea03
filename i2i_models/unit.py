"""UNIT — Liu, Breuel, Kautz. "Unsupervised Image-to-Image Translation Networks", NeurIPS 2017.
Authors' code: mingyuliutw/UNIT (trainer.py ``UNIT_Trainer``, networks.py ``VAEGen`` / ``MsImageDis``; configs
unit_edges2shoes_folder.yaml, unit_summer2winter_yosemite256_folder.yaml).

Data mode: **unpaired** — ``batch = {"real_a": x_a, "real_b": x_b}``, independently drawn, images in [-1, 1].

Shared-latent-space assumption: a pair (x_a, x_b) of corresponding images has one code z with
z = E_a(x_a) = E_b(x_b), x_a = G_a(z), x_b = G_b(z). Each domain is a VAE whose encoder gives the mean μ of
q(z|x) = N(μ, I) (unit variance, so z = μ + η, η ~ N(0, I)); translation a→b is G_b(E_a(x_a)), without noise at
test time.

Networks (``unit_base``): ``gen_a`` = {``enc``: content encoder (conv7, 2 downsamplings, 4 residual blocks, instance
norm), ``dec``: decoder (4 residual blocks with instance norm, 2 × (nearest upsample, conv5, layer norm), conv7,
tanh)}: 5,385,856 + 5,754,627 = 11,140,483 parameters; ``dis_a``: 3-scale LSGAN discriminator, 8,271,171. Same
for domain b. Init: kaiming for the generators, N(0, 0.02) for the discriminators.

Weight sharing. The paper ties the last layers of E_a and E_b and the first layers of G_a and G_b; the authors'
current code ties nothing, and that is the standard configuration here (parameter parity with their
checkpoints). ``share_latent_layers=True`` restores the paper's tie: the last residual block of both encoders
(E_H) and the first residual block of both decoders (G_H) become one net ``gen_shared`` (2 × 1,180,160
parameters at dim 256), used by both domains; ``gen_a`` and ``gen_b`` then hold only their private layers
(8,780,163 each). It is its own net so that every parameter lives in exactly one DDP wrapper.

Objective (G step; weights are the authors' config; every term sums the two directions):

* ``gan``          (1):    Σ_d Σ_k E[(D_d,k(x_ba or x_ab) − 1)²], x_ab = G_b(z_a), x_ba = G_a(z_b)   (LSGAN)
* ``recon_x``      (10):   ‖G_a(z_a) − x_a‖₁ + ‖G_b(z_b) − x_b‖₁                               (VAE likelihood)
* ``recon_kl``     (0.01): mean(μ_a²) + mean(μ_b²), μ = E(x)        (KL(N(μ, I) ‖ N(0, I)) up to 2/dim, as the code)
* ``recon_x_cyc``  (10):   ‖G_a(E_b(x_ab) + η) − x_a‖₁ + ‖G_b(E_a(x_ba) + η) − x_b‖₁              (cycle)
* ``recon_kl_cyc`` (0.01): mean(E_b(x_ab)²) + mean(E_a(x_ba)²)
* ``d_gan``        (1, D step): Σ_d Σ_k E[D_d,k(fake_d)²] + E[(D_d,k(x_d) − 1)²]

The authors scale the D loss by ``gan_w`` too; here it has its own name ``d_gan`` (with Adam a constant scale of
D's loss changes almost nothing). A term whose weight is 0 is not computed (no forward for it) and reports 0.
``train_step``: translate both ways, D step on the detached translations (the authors re-translate with fresh
noise in ``dis_update``; same distribution, one forward less), then the G step against the updated D.
Adam lr 1e-4, β (0.5, 0.999), weight decay 1e-4; lr × 0.5 every 100k iterations (see ``unit_base``); batch 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from i2i_models import losses
from i2i_models.base import LossTerm, StepOutput, unwrap
from i2i_models.blocks.conv_blocks import ResBlock
from i2i_models.blocks.decoders import Decoder
from i2i_models.blocks.encoders import ContentEncoder
from i2i_models.blocks.init import init_weights
from i2i_models.registry import register_model
from i2i_models.unit_base import Direction, UnitFamily, UnitFamilyConfig, parse_direction

Op = Literal["encode", "decode"]


@dataclass(frozen=True, kw_only=True)
class UnitConfig(UnitFamilyConfig):
    share_latent_layers: bool = False  # the paper's tied E_H / G_H; the authors' code (the standard) ties nothing


class UnitGenerator(nn.Module):
    """One domain's VAE: ``enc`` image → μ (N, dim·2^n_downsample, H/2^n, W/2^n), ``dec`` z → image."""

    def __init__(self, c: UnitConfig, n_res: int):
        super().__init__()
        self.enc = ContentEncoder(c.in_channels, dim=c.dim, n_downsample=c.n_downsample, n_res=n_res,
                                  activation=c.activ, pad_type=c.pad_type)
        self.dec = Decoder(self.enc.out_channels, c.in_channels, n_upsample=c.n_downsample, n_res=n_res,
                           res_norm="in", activation=c.activ, pad_type=c.pad_type)

    def forward(self, x: torch.Tensor, *, op: Op) -> torch.Tensor:  # one entry point, so DDP sees every call
        return self.enc(x) if op == "encode" else self.dec(x)


class SharedLatentLayers(nn.Module):
    """E_H (the encoders' last residual block) and G_H (the decoders' first), used by both domains."""

    def __init__(self, c: UnitConfig, dim: int):
        super().__init__()
        kw = dict(norm="in", activation=c.activ, pad_type=c.pad_type)
        self.enc, self.dec = ResBlock(dim, **kw), ResBlock(dim, **kw)

    def forward(self, x: torch.Tensor, *, op: Op) -> torch.Tensor:
        return self.enc(x) if op == "encode" else self.dec(x)


@register_model("unit")
class Unit(UnitFamily):
    loss_terms = (
        LossTerm("gan", 1.0, "gen_a", "LSGAN: translations should look real to the other domain's D"),
        LossTerm("recon_x", 10.0, "gen_a", "‖G_a(z_a) − x_a‖₁: within-domain VAE reconstruction"),
        LossTerm("recon_kl", 0.01, "gen_a", "mean(μ²): KL of N(μ, I) to the prior"),
        LossTerm("recon_x_cyc", 10.0, "gen_a", "‖G_a(E_b(G_b(z_a)) + η) − x_a‖₁: cycle reconstruction"),
        LossTerm("recon_kl_cyc", 0.01, "gen_a", "mean(E_b(x_ab)²): KL of the translated image's code"),
        LossTerm("d_gan", 1.0, "dis_a", "LSGAN: real → 1, translations → 0, both domains' D"),
    )
    inference_nets = ("gen_a", "gen_b")
    Config = UnitConfig
    config: UnitConfig

    def __init__(self, config: UnitConfig, *, loss_weights=None):
        super().__init__(config, loss_weights=loss_weights)
        c = config
        share = c.share_latent_layers
        if share and c.n_res < 1:
            raise ValueError("share_latent_layers needs n_res ≥ 1 (it shares one residual block each side)")
        for domain in ("a", "b"):
            self.nets[f"gen_{domain}"] = init_weights(UnitGenerator(c, c.n_res - int(share)), "kaiming")
        if share:
            dim = unwrap(self.nets["gen_a"]).enc.out_channels
            self.nets["gen_shared"] = init_weights(SharedLatentLayers(c, dim), "kaiming")
            self.inference_nets = (*type(self).inference_nets, "gen_shared")
        self._build_discriminators()

    # --- the per-domain encoder / decoder, through the (DDP) nets or, for inference, the plain modules ---------
    def _net(self, name: str, plain: bool) -> nn.Module:
        return unwrap(self.nets[name]) if plain else self.nets[name]

    def _encode(self, domain: str, x: torch.Tensor, plain: bool = False) -> torch.Tensor:
        h = self._net(f"gen_{domain}", plain)(x, op="encode")
        return self._net("gen_shared", plain)(h, op="encode") if self.config.share_latent_layers else h

    def _decode(self, domain: str, z: torch.Tensor, plain: bool = False) -> torch.Tensor:
        if self.config.share_latent_layers:
            z = self._net("gen_shared", plain)(z, op="decode")
        return self._net(f"gen_{domain}", plain)(z, op="decode")

    def latent_layers(self, domain: str) -> tuple[nn.Module, nn.Module]:
        """(the encoder's last residual block, the decoder's first) that domain ``domain`` uses."""
        if self.config.share_latent_layers:
            shared = unwrap(self.nets["gen_shared"])
            return shared.enc, shared.dec
        gen = unwrap(self.nets[f"gen_{domain}"])
        return gen.enc.model[-1][-1], gen.dec.model[0][0]

    # --- training --------------------------------------------------------------------------------------------
    def train_step(self, batch, step: int) -> StepOutput:
        x_a, x_b = batch["real_a"], batch["real_b"]
        with self.autocast(x_a):
            mu_a, mu_b = self._encode("a", x_a), self._encode("b", x_b)
            z_a, z_b = mu_a + torch.randn_like(mu_a), mu_b + torch.randn_like(mu_b)  # z ~ N(μ, I)
            x_ab, x_ba = self._decode("b", z_a), self._decode("a", z_b)
        d_raw = self._d_step(x_a, x_b, fake_a=x_ba, fake_b=x_ab)
        g_raw = self._g_losses(x_a, x_b, mu_a, mu_b, z_a, z_b, x_ab, x_ba)
        self.step_nets(self.gen_nets(), self.weighted(g_raw, "gen_a"))
        self._unfreeze_discriminators()
        raw = {k: v.detach() for k, v in {**g_raw, **d_raw}.items()}
        return StepOutput(losses=raw, images={"real_a": x_a.detach(), "fake_b": x_ab.detach().float(),
                                              "real_b": x_b.detach(), "fake_a": x_ba.detach().float()})

    def _g_losses(self, x_a, x_b, mu_a, mu_b, z_a, z_b, x_ab, x_ba) -> dict[str, torch.Tensor]:
        zero = torch.zeros((), device=x_a.device)
        raw = {t.name: zero for t in self.loss_terms if t.group == "gen_a"}
        with self.autocast(x_a):
            if self._on("recon_x"):
                raw["recon_x"] = (losses.l1(self._decode("a", z_a).float(), x_a)
                                  + losses.l1(self._decode("b", z_b).float(), x_b))
            if self._on("recon_kl"):
                raw["recon_kl"] = losses.kl_unit_variance(mu_a.float()) + losses.kl_unit_variance(mu_b.float())
            if self._on("recon_x_cyc") or self._on("recon_kl_cyc"):
                mu_a_rec, mu_b_rec = self._encode("b", x_ab), self._encode("a", x_ba)  # codes of the translations
                if self._on("recon_kl_cyc"):
                    raw["recon_kl_cyc"] = (losses.kl_unit_variance(mu_a_rec.float())
                                           + losses.kl_unit_variance(mu_b_rec.float()))
                if self._on("recon_x_cyc"):
                    x_aba = self._decode("a", mu_a_rec + torch.randn_like(mu_a_rec))
                    x_bab = self._decode("b", mu_b_rec + torch.randn_like(mu_b_rec))
                    raw["recon_x_cyc"] = losses.l1(x_aba.float(), x_a) + losses.l1(x_bab.float(), x_b)
        if self._on("gan"):
            raw["gan"] = self._g_adversarial(fake_a=x_ba, fake_b=x_ab)
        return raw

    # --- inference -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def translate(self, x: torch.Tensor, *, direction: Direction = "a2b") -> torch.Tensor:
        """x (N, C, H, W) in [-1, 1] from the source domain → the target domain: G_tgt(E_src(x)), no noise."""
        src, tgt = parse_direction(direction)
        with self.autocast(x):
            return self._decode(tgt, self._encode(src, x, plain=True), plain=True).float()

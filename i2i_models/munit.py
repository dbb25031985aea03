"""MUNIT — Huang, Liu, Belongie, Kautz. "Multimodal Unsupervised Image-to-Image Translation", ECCV 2018.
Authors' code: NVlabs/MUNIT (trainer.py ``MUNIT_Trainer``, networks.py ``AdaINGen`` / ``MsImageDis``; configs
edges2shoes_folder.yaml, summer2winter_yosemite256_folder.yaml).

Data mode: **unpaired** — ``batch = {"real_a": x_a, "real_b": x_b}``, images in [-1, 1]. Multimodal.

An image is a domain-shared content code c = E^c(x) (a spatial map) and a domain-specific style code
s = E^s(x) ∈ R^style_dim with prior N(0, I). Translation a→b: x_ab = G_b(E^c_a(x_a), s_b), s_b drawn from the prior
(a random output) or s_b = E^s_b(x_ref) of a reference image of domain b (example-guided).

Networks: ``gen_a`` = {``enc_style`` 2,764,936; ``enc_content`` 5,385,856; ``dec`` (residual blocks with AdaIN)
5,754,627; ``mlp`` style → AdaIN parameters 1,120,768} = 15,026,187 parameters (dim 64, style_dim 8, 2
downsamplings, 4 residual blocks, MLP dim 256, 3 layers; the style encoder downsamples 4 times). ``dis_a``:
3-scale LSGAN discriminator, 8,271,171. Same for domain b. Init: kaiming (G), N(0, 0.02) (D).

Objective (G step; weights are the authors' config; each term sums the two directions; s_a, s_b ~ N(0, I)):

* ``gan``         (1):  Σ_d Σ_k E[(D_d,k(x_ba or x_ab) − 1)²], x_ba = G_a(c_b, s_a), x_ab = G_b(c_a, s_b)
* ``recon_x``     (10): ‖G_a(c_a, E^s_a(x_a)) − x_a‖₁ + ‖G_b(c_b, E^s_b(x_b)) − x_b‖₁   (within-domain)
* ``recon_s``     (1):  ‖E^s_a(x_ba) − s_a‖₁ + ‖E^s_b(x_ab) − s_b‖₁                        (style reconstruction)
* ``recon_c``     (1):  ‖E^c_b(x_ab) − c_a‖₁ + ‖E^c_a(x_ba) − c_b‖₁                        (content reconstruction)
* ``recon_x_cyc`` (0):  ‖G_a(E^c_b(x_ab), E^s_a(x_a)) − x_a‖₁ + (b)          (explicit cycle; off in the configs)
* ``vgg``         (0):  mean((IN(φ(x_ba)) − IN(φ(x_b)))²) + (ab vs a)   (domain-invariant perceptual loss, IN =
  instance norm, φ = VGG16 to relu5_3; off in these configs. φ must be supplied: config ``vgg_weights`` (a
  local torchvision VGG16 state dict) or :meth:`Munit.set_perceptual_net`; no weights are downloaded.)
* ``d_gan``       (1, D step): Σ_d Σ_k E[D_d,k(fake_d)²] + E[(D_d,k(x_d) − 1)²]

The authors also scale D's loss by ``gan_w``; here it is named ``d_gan``. A term whose weight is 0 is not computed
(the cycle decodes, the feature net or the re-encoding are skipped) and reports 0. ``train_step``: encode, translate
with random styles, D step on the detached translations (the authors re-translate with fresh styles in
``dis_update``), then the G step against the updated D. Adam lr 1e-4, β (0.5, 0.999), weight decay 1e-4, lr × 0.5
every 100k iterations (``unit_base``), batch 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from i2i_models import losses
from i2i_models.base import LossTerm, StepOutput, unwrap
from i2i_models.blocks.decoders import MLP, AdaptiveInstanceNorm2d, Decoder
from i2i_models.blocks.encoders import ContentEncoder, StyleEncoder
from i2i_models.blocks.init import init_weights
from i2i_models.registry import register_model
from i2i_models.unit_base import Direction, UnitFamily, UnitFamilyConfig, parse_direction


@dataclass(frozen=True, kw_only=True)
class MunitConfig(UnitFamilyConfig):
    style_dim: int = 8
    n_downsample_style: int = 4  # fixed at 4 in the authors' AdaINGen
    mlp_dim: int = 256
    mlp_layers: int = 3
    vgg_weights: str | None = None  # local torchvision VGG16 state dict for the ``vgg`` term (nothing downloaded)


class MunitGenerator(nn.Module):
    """One domain's auto-encoder: ``encode`` x → (content, style), ``decode`` (content, style) → x."""

    def __init__(self, c: MunitConfig):
        super().__init__()
        kw = dict(activation=c.activ, pad_type=c.pad_type)
        self.enc_style = StyleEncoder(c.in_channels, c.style_dim, dim=c.dim, n_downsample=c.n_downsample_style, **kw)
        self.enc_content = ContentEncoder(c.in_channels, dim=c.dim, n_downsample=c.n_downsample, n_res=c.n_res, **kw)
        self.dec = Decoder(self.enc_content.out_channels, c.in_channels, n_upsample=c.n_downsample, n_res=c.n_res,
                           res_norm=AdaptiveInstanceNorm2d, **kw)
        self.mlp = MLP(c.style_dim, self.dec.num_adain_params(), dim=c.mlp_dim, n_layers=c.mlp_layers,
                       activation=c.activ)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.enc_content(x), self.enc_style(x)

    def decode(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.dec(content, self.mlp(style))

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None, *,
                op: Literal["encode", "decode"]):  # one entry point, so DDP sees every call
        return self.encode(x) if op == "encode" else self.decode(x, style)


class ImageNetFeatures(nn.Module):
    """φ for the ``vgg`` term: images in [-1, 1] → ImageNet mean/std normalisation → a torchvision feature net."""

    def __init__(self, features: nn.Module):
        super().__init__()
        self.features = features
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(((x + 1) / 2 - self.mean) / self.std)


def vgg16_relu5_3(weights_path: str) -> nn.Module:
    """torchvision VGG16 up to relu5_3 (``features[:30]``), weights from a local state dict file."""
    from torchvision.models import vgg16

    net = vgg16(weights=None)
    net.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    return ImageNetFeatures(net.features[:30])


def domain_invariant_perceptual(phi: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean((IN(φ(x)) − IN(φ(y)))²): instance norm removes the domain-specific feature statistics."""
    return F.mse_loss(F.instance_norm(phi(x).float()), F.instance_norm(phi(y).float()))


@register_model("munit")
class Munit(UnitFamily):
    loss_terms = (
        LossTerm("gan", 1.0, "gen_a", "LSGAN: translations should look real to the other domain's D"),
        LossTerm("recon_x", 10.0, "gen_a", "‖G(E^c(x), E^s(x)) − x‖₁: within-domain reconstruction"),
        LossTerm("recon_s", 1.0, "gen_a", "‖E^s_a(x_ba) − s_a‖₁: the random style is recovered"),
        LossTerm("recon_c", 1.0, "gen_a", "‖E^c_b(x_ab) − c_a‖₁: the content is kept"),
        LossTerm("recon_x_cyc", 0.0, "gen_a", "‖G_a(E^c_b(x_ab), E^s_a(x_a)) − x_a‖₁: explicit cycle"),
        LossTerm("vgg", 0.0, "gen_a", "mean((IN(φ(x_ba)) − IN(φ(x_b)))²): domain-invariant perceptual"),
        LossTerm("d_gan", 1.0, "dis_a", "LSGAN: real → 1, translations → 0, both domains' D"),
    )
    inference_nets = ("gen_a", "gen_b")
    multimodal = True
    Config = MunitConfig
    config: MunitConfig

    def __init__(self, config: MunitConfig, *, loss_weights=None):
        super().__init__(config, loss_weights=loss_weights)
        for domain in ("a", "b"):
            self.nets[f"gen_{domain}"] = init_weights(MunitGenerator(config), "kaiming")
        self._build_discriminators()
        self._perceptual: list[nn.Module] = []  # a list: φ is no submodule, so not in nets, checkpoints or DDP
        if config.vgg_weights is not None:
            if not os.path.isfile(config.vgg_weights):
                raise FileNotFoundError(f"vgg_weights: no file at {config.vgg_weights!r}")
            self.set_perceptual_net(vgg16_relu5_3(config.vgg_weights))

    def set_perceptual_net(self, net: nn.Module) -> None:
        """Supply φ of the ``vgg`` term: a frozen feature network taking images in [-1, 1]."""
        self._perceptual = [net.requires_grad_(False).eval()]

    def _perceptual_net(self, device: torch.device) -> nn.Module:
        if not self._perceptual:
            raise RuntimeError(
                f"MUNIT's 'vgg' loss term has weight {self.loss_weights['vgg']} but no feature network: set config "
                "vgg_weights to a local torchvision VGG16 state dict, or call model.set_perceptual_net(net); "
                "weights are not downloaded. Or set loss_weights.vgg=0 (the authors' default).")
        return self._perceptual[0].to(device)

    # --- training --------------------------------------------------------------------------------------------
    def train_step(self, batch, step: int) -> StepOutput:
        x_a, x_b = batch["real_a"], batch["real_b"]
        gen_a, gen_b = self.nets["gen_a"], self.nets["gen_b"]
        shape = (x_a.shape[0], self.config.style_dim, 1, 1)
        s_a, s_b = torch.randn(shape, device=x_a.device), torch.randn(shape, device=x_a.device)  # from the prior
        with self.autocast(x_a):
            c_a, s_a_prime = gen_a(x_a, op="encode")
            c_b, s_b_prime = gen_b(x_b, op="encode")
            x_ba, x_ab = gen_a(c_b, s_a, op="decode"), gen_b(c_a, s_b, op="decode")
        d_raw = self._d_step(x_a, x_b, fake_a=x_ba, fake_b=x_ab)
        codes = dict(c_a=c_a, c_b=c_b, s_a=s_a, s_b=s_b, s_a_prime=s_a_prime, s_b_prime=s_b_prime)
        g_raw = self._g_losses(x_a, x_b, x_ab, x_ba, **codes)
        self.step_nets(self.gen_nets(), self.weighted(g_raw, "gen_a"))
        self._unfreeze_discriminators()
        raw = {k: v.detach() for k, v in {**g_raw, **d_raw}.items()}
        return StepOutput(losses=raw, images={"real_a": x_a.detach(), "fake_b": x_ab.detach().float(),
                                              "real_b": x_b.detach(), "fake_a": x_ba.detach().float()})

    def _g_losses(self, x_a, x_b, x_ab, x_ba, *, c_a, c_b, s_a, s_b, s_a_prime, s_b_prime) -> dict[str, torch.Tensor]:
        gen_a, gen_b = self.nets["gen_a"], self.nets["gen_b"]
        zero = torch.zeros((), device=x_a.device)
        raw = {t.name: zero for t in self.loss_terms if t.group == "gen_a"}
        l1 = lambda x, y: losses.l1(x.float(), y.float())  # noqa: E731
        with self.autocast(x_a):
            if self._on("recon_x"):
                raw["recon_x"] = (l1(gen_a(c_a, s_a_prime, op="decode"), x_a)
                                  + l1(gen_b(c_b, s_b_prime, op="decode"), x_b))
            if self._on("recon_s") or self._on("recon_c") or self._on("recon_x_cyc"):
                c_b_rec, s_a_rec = gen_a(x_ba, op="encode")  # x_ba is in domain a: its style should be s_a
                c_a_rec, s_b_rec = gen_b(x_ab, op="encode")
                if self._on("recon_s"):
                    raw["recon_s"] = l1(s_a_rec, s_a) + l1(s_b_rec, s_b)
                if self._on("recon_c"):
                    raw["recon_c"] = l1(c_a_rec, c_a) + l1(c_b_rec, c_b)
                if self._on("recon_x_cyc"):
                    raw["recon_x_cyc"] = (l1(gen_a(c_a_rec, s_a_prime, op="decode"), x_a)
                                          + l1(gen_b(c_b_rec, s_b_prime, op="decode"), x_b))
            if self._on("vgg"):
                phi = self._perceptual_net(x_a.device)
                raw["vgg"] = domain_invariant_perceptual(phi, x_ba, x_b) + domain_invariant_perceptual(phi, x_ab, x_a)
        if self._on("gan"):
            raw["gan"] = self._g_adversarial(fake_a=x_ba, fake_b=x_ab)
        return raw

    # --- inference -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def translate(self, x: torch.Tensor, *, direction: Direction = "a2b", seed: int | None = None,
                  reference: torch.Tensor | None = None, style: torch.Tensor | None = None) -> torch.Tensor:
        """x (N, C, H, W) in [-1, 1] → the target domain with style code, at most one of: ``seed`` (s ~ N(0, I) from
        a generator seeded with it), ``reference`` (s = E^s_tgt(reference), 1 or N images of the target domain),
        ``style`` ((1 or N, style_dim) codes); none given: s ~ N(0, I) from the global RNG."""
        src, tgt = parse_direction(direction)
        given = [k for k, v in (("seed", seed), ("reference", reference), ("style", style)) if v is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of seed, reference, style; got {given}")
        G_src, G_tgt = unwrap(self.nets[f"gen_{src}"]), unwrap(self.nets[f"gen_{tgt}"])
        n, shape = x.shape[0], (x.shape[0], self.config.style_dim, 1, 1)
        with self.autocast(x):
            if reference is not None:
                style = G_tgt.enc_style(reference)
            elif style is None:
                gen = None if seed is None else torch.Generator().manual_seed(seed)
                style = torch.randn(shape, generator=gen) if gen is not None else torch.randn(shape, device=x.device)
            style = style.to(x.device).reshape(-1, self.config.style_dim, 1, 1)
            if style.shape[0] not in (1, n):
                raise ValueError(f"{given[0]} gives {style.shape[0]} style codes for {n} images; give 1 or {n}")
            return G_tgt.decode(G_src.enc_content(x), style.expand(shape)).float()

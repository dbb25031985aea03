"""DiscoGAN and DualGAN: CycleGAN's two-generator, two-discriminator reconstruction objective with other settings.

Each comes twice. The **preset** (``discogan``, ``dualgan``) follows the paper and is CycleGAN with other data only
(config fields and loss weights, no behaviour of its own). The **code variant** (``discogan_code``,
``dualgan_code``) reproduces the training recipe of the authors' public code, which needs more than weights: a
feature-matching term, a step-dependent weighting and an alternation of D and G steps (DiscoGAN), a gradient
penalty and D-before-G steps (DualGAN). All four use CycleGAN's networks (ResNet generators, PatchGAN
discriminators with instance norm), not the authors' — each docstring says what else differs. Their run lengths
are in epochs of one pass over the larger domain with a constant rate (``lr_policy="constant"``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch

from i2i_models import losses
from i2i_models.base import LossTerm, StepOutput, unwrap
from i2i_models.cyclegan import CycleGAN, CycleGANConfig
from i2i_models.registry import register_model


def _reweighted(**weights: float) -> tuple[LossTerm, ...]:
    """CycleGAN's terms, same names and groups, with other default weights."""
    unknown = set(weights) - {t.name for t in CycleGAN.loss_terms}
    assert not unknown, unknown
    return tuple(dataclasses.replace(t, weight=weights.get(t.name, t.weight)) for t in CycleGAN.loss_terms)


# --- DiscoGAN -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class DiscoGANConfig(CycleGANConfig):
    gan_mode: losses.GanKind = "vanilla"
    recon: Literal["l1", "mse"] = "mse"
    pool_size: int = 0
    weight_decay: float = 1e-5
    n_epochs: int = 200
    n_epochs_decay: int = 0
    lr_policy: Literal["linear", "constant"] = "constant"


@register_model("discogan")
class DiscoGAN(CycleGAN):
    """DiscoGAN — Kim, Cha, Kim, Lee, Kim. "Learning to Discover Cross-Domain Relations with Generative Adversarial
    Networks", ICML 2017. Authors' code: SKTBrain/DiscoGAN, ``discogan/image_translation.py`` — one version only
    (last commit f044178, 2017-04-12).

    **This preset follows the paper**: L_G = L_GAN_B + L_CONST_A + L_GAN_A + L_CONST_B, the two reconstruction
    losses with weight 1, measured with MSE as the code does (``recon_criterion = nn.MSELoss()``) — so
    ``recon="mse"``, ``cycle`` = 1. The GAN loss is the non-saturating cross-entropy (``nn.BCELoss``, G labelled
    real) → ``gan_mode="vanilla"``; D's loss is real·0.5 + fake·0.5, as in the code's ``get_gan_loss``. No identity
    term (``idt`` = 0), no history pool, Adam 2e-4 (0.5, 0.999) with weight decay 1e-5 (the code's), a constant rate,
    G and D stepping on every batch as CycleGAN's, for ``n_epochs`` = 200 epochs.

    The code's recipe differs (``discogan_code`` reproduces it): a feature-matching term and a curriculum on the
    weights, one optimizer per iteration (D on every third), batch 64 at 64 px, 5000 "epochs" stopped by hand. Its
    networks differ too: a 64 px conv encoder–decoder G and a conv D, both with batch norm.
    """

    Config = DiscoGANConfig
    loss_terms = _reweighted(cycle=1.0, idt=0.0)


@dataclass(frozen=True, kw_only=True)
class DiscoGANCodeConfig(DiscoGANConfig):
    image_size: int = 64  # "64 for every experiment in the paper" (the code's --image_size)
    gan_curriculum: int = 10_000  # iterations at starting_rate …
    starting_rate: float = 0.01  # … then default_rate: the reconstruction's share r of each G loss
    default_rate: float = 0.5
    update_interval: int = 3  # D steps on iterations i % 3 == 0, G on the others


@register_model("discogan_code")
class DiscoGANCode(DiscoGAN):
    """DiscoGAN as its authors' code trains it (SKTBrain/DiscoGAN ``image_translation.py`` @ f044178).

    Per generator, loss = (0.1·GAN + 0.9·FM)·(1 − r) + r·recon, with r = ``starting_rate`` 0.01 for the first
    ``gan_curriculum`` = 10,000 iterations and ``default_rate`` 0.5 after (``--gan_curriculum``, ``--starting_rate``,
    ``--default_rate``), so as terms: ``gan_ab``, ``gan_ba`` (weight 0.1), ``fm_ab``, ``fm_ba`` (weight 0.9, feature
    matching: Σ over D's normalised layers of mean((E_batch f(real) − E_batch f(fake))²), ``losses.feature_matching``)
    each × (1 − r(step)), and ``cycle`` (MSE, weight 1) × r(step) — the curriculum is a function of the global step,
    the weights stay overridable by name. One optimizer steps per iteration (``--update_interval 3``): both Ds when
    step % 3 == 0, both Gs otherwise, every loss computed from the same forward pass. Reported values are raw.

    What differs: the networks (CycleGAN's ResNet G / instance-norm PatchGAN D at ``image_size``, whose features
    after each normalised layer are matched, instead of the code's conv nets with batch norm and their relu2–relu4);
    the batch is the run's (the code: 64, a recipe's ``train.global_batch_size``); the run length is
    ``n_epochs`` = 200 epochs (the code loops over 5000 "epochs" of min(|A|, |B|)/64 iterations, stopped by hand).
    """

    Config = DiscoGANCodeConfig
    loss_terms = (*_reweighted(gan_ab=0.1, gan_ba=0.1, cycle=1.0, idt=0.0),
                  LossTerm("fm_ab", 0.9, "G_ab", "feature matching of G_ab(a) against real b in D_b's layers"),
                  LossTerm("fm_ba", 0.9, "G_ba", "feature matching of G_ba(b) against real a in D_a's layers"))
    config: DiscoGANCodeConfig

    def rate(self, step: int) -> float:
        """The reconstruction's share r of each G loss at ``step``."""
        c = self.config
        return c.starting_rate if step < c.gan_curriculum else c.default_rate

    def train_step(self, batch, step: int) -> StepOutput:
        real_a, real_b = batch["real_a"], batch["real_b"]
        train_d = step % self.config.update_interval == 0
        plain = {k: unwrap(v) for k, v in self.nets.items()}
        G_ab, G_ba = (plain[k] if train_d else self.nets[k] for k in ("G_ab", "G_ba"))
        for k in ("D_a", "D_b"):  # G's losses see the Ds frozen, outside their DDP wrappers
            plain[k].requires_grad_(False)
        with torch.set_grad_enabled(not train_d):
            images = self._cycles(real_a, real_b, G_ab, G_ba)
            g_raw = self._code_generator_losses(real_a, real_b, images)
        for k in ("D_a", "D_b"):
            plain[k].requires_grad_(True)
        if train_d:
            d_raw = self._discriminator_losses(real_a, real_b, images["fake_a"].detach(), images["fake_b"].detach())
            self.step_nets(("D_a", "D_b"), self.weighted(d_raw, "D_a") + self.weighted(d_raw, "D_b"))
        else:
            with torch.no_grad():  # the D terms of a G iteration: reported only
                d_raw = self._discriminator_losses(real_a, real_b, images["fake_a"], images["fake_b"])
            r = self.rate(step)
            scaled = {k: v * (r if k == "cycle" else 1.0 - r) for k, v in g_raw.items()}
            self.step_nets(("G_ab", "G_ba"), self.weighted(scaled, "G_ab") + self.weighted(scaled, "G_ba"))
        raw = {k: v.detach() for k, v in {**g_raw, **d_raw}.items()}
        return StepOutput(losses=raw, images={k: images[k].detach().float() for k in ("fake_a", "fake_b")})

    def _code_generator_losses(self, real_a, real_b, images) -> dict[str, torch.Tensor]:
        D_a, D_b = unwrap(self.nets["D_a"]), unwrap(self.nets["D_b"])
        with self.autocast(real_a):
            logits_b, fake_b_feats = D_b.features(images["fake_b"])
            logits_a, fake_a_feats = D_a.features(images["fake_a"])
            with torch.no_grad():
                real_b_feats, real_a_feats = D_b.features(real_b)[1], D_a.features(real_a)[1]
            return {"gan_ab": losses.adversarial(logits_b.float(), True, "vanilla", for_discriminator=False),
                    "gan_ba": losses.adversarial(logits_a.float(), True, "vanilla", for_discriminator=False),
                    "fm_ab": losses.feature_matching(real_b_feats, fake_b_feats),
                    "fm_ba": losses.feature_matching(real_a_feats, fake_a_feats),
                    "cycle": losses.mse(images["rec_a"].float(), real_a.float())
                    + losses.mse(images["rec_b"].float(), real_b.float()),
                    "idt": torch.zeros((), device=real_a.device)}


# --- DualGAN ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class DualGANConfig(CycleGANConfig):
    gan_mode: losses.GanKind = "wgan"
    clip_D: float | None = 0.01
    n_critic: int = 2
    pool_size: int = 0
    optimizer: Literal["adam", "rmsprop"] = "rmsprop"
    lr: float = 5e-5
    n_epochs: int = 50
    n_epochs_decay: int = 0
    lr_policy: Literal["linear", "constant"] = "constant"


@register_model("dualgan")
class DualGAN(CycleGAN):
    """DualGAN — Yi, Zhang, Tan, Gong. "DualGAN: Unsupervised Dual Learning for Image-to-Image Translation",
    ICCV 2017. Authors' code: duxingren14/DualGAN (TensorFlow), in two versions whose defaults differ (below).

    **This preset follows the paper**: generator loss λ_U‖u − G_B(G_A(u))‖₁ + λ_V‖v − G_A(G_B(v))‖₁ − D_B(G_B(v))
    − D_A(G_A(u)); critics D(fake) − D(real): the WGAN loss (Arjovsky et al. 2017), trained as in WGAN with clipped
    critic weights, several critic steps per generator step (the paper's Algorithm 1) and RMSProp at 5e-5 →
    ``gan_mode="wgan"``, ``clip_D`` = 0.01 (WGAN's default), ``n_critic`` = 2. The paper sets λ_U, λ_V "within [100.0,
    1,000.0]" depending on the task; we use 1000 (``cycle`` = 1000, L1). D terms carry weight 1 (the critic loss is
    not halved), no identity term, no history pool, constant rate for 50 epochs (both code versions' ``--epoch``).
    Each critic step uses a new batch (the trainer's next step), as Algorithm 1 samples new ones. The networks are
    CycleGAN's ResNets and instance-norm PatchGANs, not DualGAN's U-Net with batch norm and its critics.

    The code, by version:

    * **up to commit 4ae5faf (2018-04-17)**, the release that accompanied the paper: sigmoid cross-entropy GAN (not
      WGAN), no weight clipping (``clip_trainable_vars`` is defined but never called), per batch one D step then two
      G steps, λ_A = λ_B = 20, RMSProp(5e-5, decay 0.9), batch 1, 50 epochs of min(|A|, |B|) batches;
    * **from commit 915116c (2020-04-03, "provide more options for training losses")**: ``--GAN_type`` wgan-gp by
      default (critic loss D(fake) − D(real) + 10·gradient penalty, no clipping; ``wgan`` clips at 0.01, ``classic``
      is the old loss), ``--n_critic`` 1 (one D step, then the G step on the same batch; with k > 1 the G step runs on
      every k-th batch, still on that batch), λ = 500, a global (non-patch) critic (``--disc_type globalgan``); the
      rest as before. ``dualgan_code`` reproduces this version's defaults.
    """

    Config = DualGANConfig
    loss_terms = _reweighted(cycle=1000.0, idt=0.0, d_a_real=1.0, d_a_fake=1.0, d_b_real=1.0, d_b_fake=1.0)


@dataclass(frozen=True, kw_only=True)
class DualGANCodeConfig(DualGANConfig):
    clip_D: float | None = None  # wgan-gp: the penalty is the Lipschitz constraint
    n_critic: int = 1

    def __post_init__(self) -> None:
        if self.n_critic < 1:
            raise ValueError(f"n_critic must be ≥ 1, got {self.n_critic}")


@register_model("dualgan_code")
class DualGANCode(DualGAN):
    """DualGAN as its authors' current code trains it by default (duxingren14/DualGAN ``model.py``/``main.py``
    from commit 915116c, 2020-04-03): ``--GAN_type wgan-gp --n_critic 1 --lambda_A 500 --lambda_B 500``.

    Critics: D(fake) − D(real) + 10·GP per domain (``d_a_gp``, ``d_b_gp``, weight 10 = the code's γ;
    ``losses.gradient_penalty`` on x̂ = real + ε(fake − real)), no clipping. Generators: −D(fake) + 500·‖cycle‖₁
    (``cycle`` = 500). Per batch, the D step comes first and the G step follows on the same batch against the
    updated critics (with ``n_critic`` k > 1: on every k-th batch), as the code's ``run_optim``. RMSProp(5e-5, decay
    0.9), batch 1, 50 epochs, constant rate.

    What differs: the networks (CycleGAN's ResNet G and instance-norm PatchGAN critic, whose per-patch outputs are
    averaged, instead of the code's U-Net and its global critic with batch norm); an epoch is one pass over the
    larger domain (the code's: min(|A|, |B|) batches).
    """

    Config = DualGANCodeConfig
    loss_terms = (*_reweighted(cycle=500.0, idt=0.0, d_a_real=1.0, d_a_fake=1.0, d_b_real=1.0, d_b_fake=1.0),
                  LossTerm("d_a_gp", 10.0, "D_a", "WGAN-GP on x̂ between real a and G_ba(b)"),
                  LossTerm("d_b_gp", 10.0, "D_b", "WGAN-GP on x̂ between real b and G_ab(a)"))

    def train_step(self, batch, step: int) -> StepOutput:
        real_a, real_b = batch["real_a"], batch["real_b"]
        train_g = step % self.config.n_critic == 0
        G_ab, G_ba = ((self.nets[k] if train_g else unwrap(self.nets[k])) for k in ("G_ab", "G_ba"))
        with torch.set_grad_enabled(train_g):
            images = self._cycles(real_a, real_b, G_ab, G_ba)
        d_raw = self._discriminator_step(real_a, real_b, images["fake_a"], images["fake_b"])  # detached fakes
        D_a, D_b = unwrap(self.nets["D_a"]), unwrap(self.nets["D_b"])
        for D in (D_a, D_b):
            D.requires_grad_(False)
        with torch.set_grad_enabled(train_g):
            g_raw = self._generator_losses(real_a, real_b, images, G_ab, G_ba, D_a, D_b)  # the updated critics
        if train_g:
            self.step_nets(("G_ab", "G_ba"), self.weighted(g_raw, "G_ab") + self.weighted(g_raw, "G_ba"))
        for D in (D_a, D_b):
            D.requires_grad_(True)
        raw = {k: v.detach() for k, v in {**g_raw, **d_raw}.items()}
        return StepOutput(losses=raw, images={k: images[k].detach().float() for k in ("fake_a", "fake_b")})

    def _discriminator_losses(self, real_a, real_b, fake_a, fake_b) -> dict[str, torch.Tensor]:
        raw = super()._discriminator_losses(real_a, real_b, fake_a, fake_b)
        with self.autocast(real_a):
            raw["d_a_gp"] = losses.gradient_penalty(self.nets["D_a"], real_a, fake_a)
            raw["d_b_gp"] = losses.gradient_penalty(self.nets["D_b"], real_b, fake_b)
        return raw

"""StarGAN v2 — Choi, Uh, Yoo, Ha. "StarGAN v2: Diverse Image Synthesis for Multiple Domains", CVPR 2020.
Authors' code: clovaai/stargan-v2 (core/model.py, core/solver.py).

Data mode: **labeled** — ``batch = {"image": x, "domain": y, "ref": x_ref, "ref2": x_ref2, "ref_domain": ỹ}``,
images in [-1, 1]; ``ref`` and ``ref2`` are two different images of the target domain ỹ. The model draws the two
latent codes z₁, z₂ ~ N(0, I) (``latent_dim``) itself, as the authors' loader does.

Networks (``blocks/stargan.py``): ``G`` generator (AdaIN-conditioned decoder), ``F`` mapping network s = F_ỹ(z)
(shared MLP, one head per domain), ``E`` style encoder s = E_y(x) (one head per domain), ``D`` multi-task
discriminator with one real/fake logit per domain, and the exponential moving averages ``G_ema``, ``F_ema``,
``E_ema`` (β 0.999, ``requires_grad=False``, never DDP-wrapped): they are checkpointed with the rest and are what
``translate`` uses and ``export`` keeps. Init: He (kaiming normal, fan_in), biases 0, as the authors' ``he_init``.
Standard config = AFHQ (256 px, 3 domains, w_hpf 0, style 64, latent 16): G 33,892,995, F 3,259,072,
E 20,949,760, D 20,852,803 parameters. CelebA-HQ (2 domains, w_hpf 1): G 43,467,395, F 2,438,272, E 20,916,928,
D 20,852,290 — w_hpf > 0 adds a down/up-sampling level and high-pass skip connections masked by a pretrained
face-landmark network (FAN) that we cannot download: pass one with :meth:`set_landmark_net`, otherwise training and
translation raise. ``base_dim`` (default 2¹⁴ / image_size, the authors') and ``mapping_dim`` only exist so that tests
can build tiny networks.

Objective (eq. 5): min_{G,F,E} max_D  L_adv + λ_sty·L_sty − λ_ds·L_ds + λ_cyc·L_cyc  (+ λ_r1·R1 for D), with
s̃ = F_ỹ(z) in the latent-guided pass and s̃ = E_ỹ(x_ref) in the reference-guided pass, ŝ = E_y(x):

* ``adv``    (G, 1): −E[log σ(D_ỹ(G(x, s̃)))]                   (non-saturating, BCE with logits as the authors)
* ``sty``    (G, 1): E[‖s̃ − E_ỹ(G(x, s̃))‖₁]                     style reconstruction
* ``ds``     (G, 1): E[‖G(x, s̃₁) − G(x, s̃₂)‖₁]                  style diversification, second sample detached
* ``cyc``    (G, 1): E[‖x − G(G(x, s̃), ŝ)‖₁]                    cycle consistency (source characteristics)
* ``d_real`` (D, 1): −E[log σ(D_y(x))]
* ``d_fake`` (D, 1): −E[log(1 − σ(D_ỹ(G(x, s̃))))]
* ``r1``     (D, 1): ½·E[‖∇_x D_y(x)‖²]                          on real images (``losses.r1``: autograd.grad, then
  one ordinary backward of the whole D loss — never a double backward through DDP)

The diversity term is *maximised*, and its weight decays linearly to 0 over ``ds_iter`` = 100k steps. How it enters
G's loss: the reported ``ds`` is the positive distance above; ``train_step`` hands ``self.weighted`` the signed,
scheduled value −ds_schedule(step)·ds with ds_schedule(step) = max(0, 1 − step/ds_iter), and ``weighted`` multiplies
by the named weight λ_ds — so the effective weight is λ_ds·max(0, 1 − step/ds_iter), exactly the authors'
``args.lambda_ds -= initial/ds_iter`` per iteration, as a function of ``step`` instead of a mutated global. λ_ds is
still overridable by name (``loss_weights.ds``): 1 is the code default and the CelebA-HQ command; the AFHQ command
uses 2. ``step`` is the global iteration count the trainer passes.

``train_step`` follows the authors' ``Solver.train``: D step with latent-guided fakes, D step with reference-guided
fakes (each: real + R1 + fake), G step latent-guided (steps G, F and E), G step reference-guided (steps G only —
the authors call only ``optims.generator.step()`` there; E is frozen for it, F is not used), then the EMA update of
G, F, E, identically on every rank. Reported losses are the mean of each term over its two passes.
Adam: G/E/D lr 1e-4, F lr 1e-6, β (0, 0.99), weight decay 1e-4; lr constant. Run length: ``n_iters`` = 100k
iterations (``--total_iters``) at the authors' global batch 8 (a recipe's ``train.global_batch_size``).

EMA start. The authors' ``build_model`` deep-copies G, F and E into the EMA nets *before* ``Solver`` applies
``he_init`` to every network whose name lacks "ema" — so the averages start from PyTorch's default initialisation,
not from the He-initialised weights training starts from, and the first update is 0.999·default + 0.001·trained.
Here too: the EMA copies are taken before He init. Under DDP every rank builds the model from the same seed
(``pipelines.train_loop``), so the copies agree without communication.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from i2i_models import losses
from i2i_models.base import I2IModel, LossTerm, RunLength, StepOutput, unwrap
from i2i_models.blocks.ema import ema_copy, ema_update
from i2i_models.blocks.init import init_weights
from i2i_models.blocks.stargan import Generator, MappingNetwork, MultiTaskDiscriminator, StyleEncoder
from i2i_models.registry import register_model

LandmarkNet = Callable[[torch.Tensor], Sequence[torch.Tensor]]


@dataclass(frozen=True, kw_only=True)
class StarGANv2Config:
    image_size: int = 256
    num_domains: int = 3  # AFHQ: cat, dog, wild
    w_hpf: float = 0.0  # AFHQ 0; CelebA-HQ 1 (needs a face-landmark network)
    style_dim: int = 64
    latent_dim: int = 16
    max_conv_dim: int = 512
    mapping_dim: int = 512  # hidden width of F
    base_dim: int | None = None  # None: 2**14 // image_size (the authors'); set only for tiny test networks
    lr: float = 1e-4  # G, E, D
    f_lr: float = 1e-6  # F: 100× slower, as the authors
    beta1: float = 0.0
    beta2: float = 0.99
    weight_decay: float = 1e-4
    ema_beta: float = 0.999
    ds_iter: int = 100_000  # λ_ds decays linearly to 0 over this many steps
    n_iters: int = 100_000  # the run's length in iterations (the authors' --total_iters, at global batch 8)

    def __post_init__(self) -> None:
        if self.num_domains < 1 or self.ds_iter < 1 or self.w_hpf < 0:
            raise ValueError("need num_domains ≥ 1, ds_iter ≥ 1 and w_hpf ≥ 0")


@register_model("stargan_v2")
class StarGANv2(I2IModel):
    data_mode = "labeled"
    multimodal = True
    loss_terms = (
        LossTerm("adv", 1.0, "G", "−log σ(D_ỹ(G(x, s̃))): fool the target domain's discriminator head"),
        LossTerm("sty", 1.0, "G", "‖s̃ − E_ỹ(G(x, s̃))‖₁: the output carries the style"),
        LossTerm("ds", 1.0, "G", "‖G(x, s̃₁) − G(x, s̃₂)‖₁, maximised; weight × max(0, 1 − step/ds_iter)"),
        LossTerm("cyc", 1.0, "G", "‖x − G(G(x, s̃), E_y(x))‖₁: keep the source's characteristics"),
        LossTerm("d_real", 1.0, "D", "−log σ(D_y(x))"),
        LossTerm("d_fake", 1.0, "D", "−log(1 − σ(D_ỹ(G(x, s̃))))"),
        LossTerm("r1", 1.0, "D", "½‖∇_x D_y(x)‖² on real images"),
    )
    inference_nets = ("G_ema", "F_ema", "E_ema")
    Config = StarGANv2Config
    # saved before the run length counted iterations (it was converted to epochs with these)
    legacy_config_keys = frozenset({"batch_size", "train_size"})

    def __init__(self, config: StarGANv2Config, *, loss_weights: Mapping[str, float] | None = None):
        super().__init__(config, loss_weights=loss_weights)
        c = config
        nets = {"G": Generator(c.image_size, c.style_dim, c.max_conv_dim, c.w_hpf, c.base_dim),
                "F": MappingNetwork(c.latent_dim, c.style_dim, c.num_domains, c.mapping_dim),
                "E": StyleEncoder(c.image_size, c.style_dim, c.num_domains, c.max_conv_dim, c.base_dim),
                "D": MultiTaskDiscriminator(c.image_size, c.num_domains, c.max_conv_dim, c.base_dim)}
        emas = {f"{k}_ema": ema_copy(nets[k]) for k in ("G", "F", "E")}  # before He init, as the authors' copies
        for name, net in nets.items():
            self.nets[name] = init_weights(net, "kaiming")  # the authors' he_init: kaiming normal fan_in, bias 0
        self.nets.update(emas)
        self._landmark_net: LandmarkNet | None = None

    def set_landmark_net(self, net: LandmarkNet | None) -> None:
        """The face-landmark network for w_hpf > 0: ``net(x)`` → two heatmaps (N, 1, h, w). Not a member of
        ``nets``: not trained, checkpointed, exported or counted (set it again on a loaded/exported model)."""
        object.__setattr__(self, "_landmark_net", net)  # bypass nn.Module registration

    def _masks(self, x: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
        if self.config.w_hpf <= 0:
            return None
        if self._landmark_net is None:
            raise RuntimeError(f"stargan_v2 with w_hpf={self.config.w_hpf} needs a pretrained face-landmark network "
                               "(FAN) for its high-pass masks; supply one with model.set_landmark_net(net), or use "
                               "w_hpf=0")
        with torch.no_grad():
            return tuple(self._landmark_net(x.detach()))

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        return {n: torch.optim.Adam(self.nets[n].parameters(), lr=c.f_lr if n == "F" else c.lr,
                                    betas=(c.beta1, c.beta2), weight_decay=c.weight_decay)
                for n in ("G", "F", "E", "D")}

    @classmethod
    def run_length(cls, config: StarGANv2Config) -> RunLength:
        return RunLength("iterations", config.n_iters)

    def ds_schedule(self, step: int) -> float:
        """Factor on λ_ds at ``step``: 1 at step 0, linearly down to 0 at ``ds_iter`` and after."""
        return max(0.0, 1.0 - step / self.config.ds_iter)

    def train_step(self, batch: Mapping[str, torch.Tensor], step: int) -> StepOutput:
        x_real, y_org = batch["image"], batch["domain"]
        x_ref, x_ref2, y_trg = batch["ref"], batch["ref2"], batch["ref_domain"]
        z_trg, z_trg2 = (torch.randn(x_real.size(0), self.config.latent_dim, device=x_real.device)
                         for _ in range(2))
        masks = self._masks(x_real)
        d_lat = self._d_step(x_real, y_org, y_trg, masks, z_trg, latent=True)
        d_ref = self._d_step(x_real, y_org, y_trg, masks, x_ref, latent=False)
        g_lat, fake_lat = self._g_step(x_real, y_org, y_trg, masks, (z_trg, z_trg2), step, latent=True)
        g_ref, fake_ref = self._g_step(x_real, y_org, y_trg, masks, (x_ref, x_ref2), step, latent=False)
        for name in ("G", "F", "E"):
            ema_update(self.nets[f"{name}_ema"], unwrap(self.nets[name]), self.config.ema_beta)
        raw = {k: ((lat[k] + ref[k]) / 2).detach() for lat, ref in ((d_lat, d_ref), (g_lat, g_ref)) for k in lat}
        return StepOutput(losses=raw, images={"real": x_real.detach(), "fake_latent": fake_lat, "ref": x_ref.detach(),
                                              "fake_ref": fake_ref})

    def _d_step(self, x_real: torch.Tensor, y_org: torch.Tensor, y_trg: torch.Tensor, masks, source: torch.Tensor,
                *, latent: bool) -> dict[str, torch.Tensor]:
        """Authors' ``compute_d_loss`` + step: real (+ R1 on it) vs a fake styled by F(z) or E(x_ref)."""
        D = self.nets["D"]
        with torch.no_grad(), self.autocast(x_real):  # the fake is a constant for D: plain modules, no DDP
            s_trg = unwrap(self.nets["F" if latent else "E"])(source, y_trg)
            x_fake = unwrap(self.nets["G"])(x_real, s_trg, masks)
        x_in = x_real.detach().requires_grad_(True)
        with self.autocast(x_real):
            out_real = D(x_in, y_org).float()
            raw = {"d_real": losses.adversarial(out_real, True), "r1": losses.r1(out_real, x_in),
                   "d_fake": losses.adversarial(D(x_fake, y_trg).float(), False)}
        self.step_optimizer(self.optimizers["D"], self.weighted(raw, "D"))  # one ordinary backward
        return raw

    def _g_step(self, x_real: torch.Tensor, y_org: torch.Tensor, y_trg: torch.Tensor, masks,
                sources: tuple[torch.Tensor, torch.Tensor], step: int, *, latent: bool):
        """Authors' ``compute_g_loss`` + step. Latent-guided: s̃ = F(z), steps G, F and E. Reference-guided:
        s̃ = E(x_ref), steps G only, so E is frozen and called outside its DDP wrapper (as D always is here)."""
        D = unwrap(self.nets["D"]).requires_grad_(False)
        E = self.nets["E"] if latent else unwrap(self.nets["E"]).requires_grad_(False)
        style = self.nets["F"] if latent else E
        G, (src, src2) = self.nets["G"], sources
        with self.autocast(x_real):
            s_trg = style(src, y_trg)
            x_fake = G(x_real, s_trg, masks)
            with torch.no_grad():  # the authors detach the second sample: only a target of the distance
                x_fake2 = unwrap(G)(x_real, unwrap(style)(src2, y_trg), masks)
            x_rec = G(x_fake, E(x_real, y_org), self._masks(x_fake))
            raw = {"adv": losses.adversarial(D(x_fake, y_trg).float(), True, for_discriminator=False),
                   "sty": losses.l1(E(x_fake, y_trg).float(), s_trg.float()),
                   "ds": losses.l1(x_fake.float(), x_fake2.float()),
                   "cyc": losses.l1(x_rec.float(), x_real.float())}
        # −λ_ds·schedule(step)·ds: the diversity is maximised; λ_ds itself is applied in self.weighted
        loss = self.weighted({**raw, "ds": -self.ds_schedule(step) * raw["ds"]}, "G")
        stepped = [self.optimizers[n] for n in (("G", "F", "E") if latent else ("G",))]
        for opt in stepped:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in stepped:
            opt.step()
        D.requires_grad_(True)
        unwrap(self.nets["E"]).requires_grad_(True)
        return raw, x_fake.detach().float()

    @torch.no_grad()
    def translate(self, x: torch.Tensor, *, domain: int | torch.Tensor, seed: int | None = None,
                  reference: torch.Tensor | None = None) -> torch.Tensor:
        """Into ``domain`` with the EMA nets: latent-guided (z ~ N(0, I) from a generator seeded by ``seed``, or
        the global RNG when None, then F_ema) or reference-guided (style E_ema(reference, domain))."""
        if x.dim() != 4 or x.size(1) != 3:
            raise ValueError(f"x must be (N, 3, H, W), got {tuple(x.shape)}")
        y = self._target_domains(domain, x)
        G, F_map, E = (unwrap(self.nets[k]) for k in self.inference_nets)
        masks = self._masks(x)
        with self.autocast(x):
            if reference is not None:
                if seed is not None:
                    raise ValueError("give either seed (latent-guided) or reference (reference-guided), not both")
                s = E(self._check_reference(reference, x), y)
            else:
                gen = None if seed is None else torch.Generator(device=x.device).manual_seed(seed)
                z = torch.randn(x.size(0), self.config.latent_dim, generator=gen, device=x.device)
                s = F_map(z, y)
            return G(x, s, masks).float()

    def forward(self, x: torch.Tensor, **condition) -> torch.Tensor:  # domain is required: pass it through
        return self.translate(x, **condition)

    def _target_domains(self, domain: int | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        n, k = x.size(0), self.config.num_domains
        y = torch.as_tensor(domain, device=x.device)
        if y.dtype.is_floating_point or y.dtype == torch.bool or y.dim() > 1 or (y.dim() == 1 and len(y) != n):
            raise ValueError(f"domain must be an int or an integer tensor of shape ({n},), got {domain!r}")
        if ((y < 0) | (y >= k)).any():
            raise ValueError(f"domain must be in [0, {k}) for this {k}-domain model, got {y.tolist()}")
        return y.long().expand(n)

    def _check_reference(self, reference: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        size = self.config.image_size
        if reference.dim() != 4 or reference.shape[1:] != (3, size, size) or reference.size(0) not in (1, x.size(0)):
            raise ValueError(f"reference must be (1 or {x.size(0)}, 3, {size}, {size}) — one image per input or one "
                             f"for all — got {tuple(reference.shape)}")
        return reference.to(x.device).expand(x.size(0), -1, -1, -1)

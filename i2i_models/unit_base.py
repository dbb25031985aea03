"""What UNIT and MUNIT share: two domains, a generator and a multi-scale LSGAN discriminator per domain, the
authors' Adam with weight decay and step decay, and the discriminator step. The families are in ``unit.py`` and
``munit.py``; this is their common base, not a family.

Nets: ``gen_a``, ``gen_b`` (one module per domain, holding its encoder(s) and decoder, as the authors'
checkpoints), ``dis_a`` (judges images of domain A), ``dis_b``. Optimizers are keyed by net name. The authors use
one Adam over gen_a + gen_b and one over dis_a + dis_b; Adam keeps no state across parameters (weight decay is
per parameter too), so one Adam per net with the same settings, stepped together after one backward, is the same
update. The generator terms are declared with group ``gen_a`` and the discriminator term with group ``dis_a``:
each of them trains both domains' networks (:meth:`I2IModel.step_nets`).

Schedule, in the authors' unit: ``n_iters`` = 1M iterations at batch 1 (``max_iter``), the rate ×``gamma`` every
``step_size`` = 100k iterations (StepLR stepped at the start of every iteration: ``schedules.step_decay``, a
function of the global step the trainer passes, whatever the size of an epoch). An epoch of the pipeline is one
pass over the larger domain; the run stops at ``n_iters`` iterations, in the middle of an epoch if need be.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from i2i_models import losses
from i2i_models.base import I2IModel, RunLength, unwrap
from i2i_models.blocks.conv_blocks import PadType
from i2i_models.blocks.discriminators import MultiScaleDiscriminator
from i2i_models.blocks.init import init_weights
from i2i_models.schedules import step_decay

Direction = Literal["a2b", "b2a"]


@dataclass(frozen=True, kw_only=True)
class UnitFamilyConfig:
    image_size: int = 256  # the training crop (the authors' crop_image_height/width); the networks are fully conv
    in_channels: int = 3
    dim: int = 64  # channels after the first conv of the encoders
    n_downsample: int = 2  # content encoder downsamplings = decoder upsamplings
    n_res: int = 4  # residual blocks in the encoder and in the decoder
    activ: Literal["relu", "lrelu"] = "relu"
    pad_type: PadType = "reflect"
    dis_dim: int = 64
    dis_n_layer: int = 4
    dis_num_scales: int = 3
    gan_mode: Literal["lsgan", "vanilla"] = "lsgan"
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    weight_decay: float = 1e-4
    step_size: int = 100_000  # iterations between halvings of the learning rate
    gamma: float = 0.5
    n_iters: int = 1_000_000  # the authors' max_iter: the run's length, in iterations


def multiscale_adversarial(preds: Sequence[torch.Tensor], real: bool, kind: losses.GanKind, *,
                           for_discriminator: bool = True) -> torch.Tensor:
    """Σ over scales of the GAN loss of each scale's logit map (LSGAN: Σ_k E[(D_k(x) − t)²], t = 1 real, 0 fake)."""
    return torch.stack([losses.adversarial(p.float(), real, kind, for_discriminator=for_discriminator)
                        for p in preds]).sum()


def parse_direction(direction: str) -> tuple[str, str]:
    """"a2b" → ("a", "b"): the source and target domain."""
    if direction not in ("a2b", "b2a"):
        raise ValueError(f"direction must be 'a2b' or 'b2a', got {direction!r}")
    return direction[0], direction[2]


class UnitFamily(I2IModel):
    data_mode = "unpaired"
    config: UnitFamilyConfig

    def _build_discriminators(self) -> None:
        c = self.config
        for domain in ("a", "b"):
            D = MultiScaleDiscriminator(c.in_channels, dim=c.dis_dim, n_layers=c.dis_n_layer,
                                        num_scales=c.dis_num_scales, pad_type=c.pad_type)
            self.nets[f"dis_{domain}"] = init_weights(D, "normal", 0.02)  # the authors' "gaussian" init for D

    def gen_nets(self) -> tuple[str, ...]:
        return tuple(n for n in self.nets if n.startswith("gen"))

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        return {name: torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=c.lr,
                                       betas=(c.beta1, c.beta2), weight_decay=c.weight_decay)
                for name, net in self.nets.items()}

    legacy_config_keys = frozenset({"iters_per_epoch"})  # saved before the step decay counted iterations

    def lr_factor(self, *, step: int, epoch: int) -> float:
        return step_decay(step, self.config.step_size, self.config.gamma)

    @classmethod
    def run_length(cls, config: UnitFamilyConfig) -> RunLength:
        return RunLength("iterations", config.n_iters)

    def _on(self, term: str) -> bool:
        """Terms whose weight is 0 are not computed (no forward is spent on them) and are reported as 0. Under DDP,
        zero weights that leave a sub-network out of every G term (MUNIT with recon_x = recon_s = recon_x_cyc = 0
        leaves the style encoders unused) would need ``find_unused_parameters``; the defaults use every parameter."""
        return self.loss_weights[term] != 0

    def _d_step(self, real_a: torch.Tensor, real_b: torch.Tensor, fake_a: torch.Tensor,
                fake_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """``d_gan`` = Σ_{d ∈ a,b} Σ_k E[D_d,k(fake_d)²] + E[(D_d,k(real_d) − 1)²] on detached translations
        (the authors' dis_update; their total is gan_w · (loss_dis_a + loss_dis_b))."""
        if not self._on("d_gan"):
            return {"d_gan": torch.zeros((), device=real_a.device)}
        kind = self.config.gan_mode
        with self.autocast(real_a):
            d_gan = sum(multiscale_adversarial(self.nets[f"dis_{d}"](fake.detach()), False, kind)
                        + multiscale_adversarial(self.nets[f"dis_{d}"](real), True, kind)
                        for d, real, fake in (("a", real_a, fake_a), ("b", real_b, fake_b)))
        raw = {"d_gan": d_gan}
        self.step_nets(("dis_a", "dis_b"), self.weighted(raw, "dis_a"))
        return raw

    def _g_adversarial(self, fake_a: torch.Tensor, fake_b: torch.Tensor) -> torch.Tensor:
        """``gan`` = Σ_{d ∈ a,b} Σ_k E[(D_d,k(fake_d) − 1)²], the discriminators frozen and called outside their DDP
        wrappers (no reducer involved). Call :meth:`_unfreeze_discriminators` after the G step."""
        kind = self.config.gan_mode
        total = torch.zeros((), device=fake_a.device)
        for d, fake in (("a", fake_a), ("b", fake_b)):
            D = unwrap(self.nets[f"dis_{d}"]).requires_grad_(False)
            with self.autocast(fake):
                total = total + multiscale_adversarial(D(fake), True, kind, for_discriminator=False)
        return total

    def _unfreeze_discriminators(self) -> None:
        for d in ("a", "b"):
            unwrap(self.nets[f"dis_{d}"]).requires_grad_(True)

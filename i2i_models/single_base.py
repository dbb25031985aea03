"""What the single-domain families (ae, vae, gan, vae_gan, aae, avb, ali) share: data mode ``single`` (``batch =
{"image": x}``, x (N, 3, H, W) in [-1, 1]), the DCGAN configuration, the prior, one Adam per network, and inference
(``sample`` from the prior, ``translate`` = reconstruction x → z → x'). This is their common base, not a family.

Standard configuration (the DCGAN one): 64 px, nz = 100, ngf = ndf = 64, N(0, 0.02) init, Adam lr 2e-4,
β = (0.5, 0.999), ``n_epochs`` = 25 — DCGAN's reference run (pytorch/examples ``dcgan``: ``--niter 25``), the one
image-scale reference the papers share; a family whose authors say otherwise says so in its docstring.

Optimizers are keyed by network name (``E``, ``G``, ``D``…), one Adam each, at the same settings. A term declares
the group whose weighted sum it enters; when one backward of several groups' sums trains several networks (the
reconstruction trains E and G), every listed network's optimizer steps after it (:meth:`SingleDomainModel._step`).

Inference. ``sample(n, seed=…)`` draws z from the prior with its own ``torch.Generator`` (on the CPU, then moved),
so one seed gives the same images whatever the global RNG state and the device; ``translate(x)`` is deterministic.
Both run the plain networks in eval mode: batch norm uses its running averages (an image does not depend on the
others in its batch) and they are never updated; the modules' train/eval modes are restored afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from i2i_models.base import I2IModel, RunLength, unwrap
from i2i_models.blocks.dcgan import DCGANDiscriminator, DCGANEncoder, DCGANGenerator
from i2i_models.blocks.init import init_weights

Prior = Literal["gaussian", "uniform"]


@dataclass(frozen=True, kw_only=True)
class SingleDomainConfig:
    image_size: int = 64  # a power of two ≥ 8: the DCGAN networks have log2(image_size) − 2 stride-2 stages
    channels: int = 3
    nz: int = 100  # the code / latent dimension
    ngf: int = 64
    ndf: int = 64
    init_gain: float = 0.02
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    n_epochs: int = 25  # DCGAN's reference run


def dcgan_generator(c: SingleDomainConfig) -> nn.Module:
    """G(z): the DCGAN generator of ``c`` (nz → image), N(0, gain) init — the decoder of every single-domain family."""
    return init_weights(DCGANGenerator(c.nz, c.channels, ngf=c.ngf, image_size=c.image_size), gain=c.init_gain)


def dcgan_encoder(c: SingleDomainConfig, out: int | None = None) -> nn.Module:
    """E(x): the DCGAN discriminator trunk ending in a 4×4 conv to ``out`` values (default nz)."""
    return init_weights(DCGANEncoder(c.channels, out or c.nz, ndf=c.ndf, image_size=c.image_size), gain=c.init_gain)


def dcgan_discriminator(c: SingleDomainConfig) -> nn.Module:
    """D(x): the DCGAN discriminator of ``c`` (image → one logit)."""
    return init_weights(DCGANDiscriminator(c.channels, ndf=c.ndf, image_size=c.image_size), gain=c.init_gain)


class SingleDomainModel(I2IModel):
    data_mode = "single"
    encodes = True
    config: SingleDomainConfig

    # --- optimisation ----------------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        return {name: torch.optim.Adam(net.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))
                for name, net in self.nets.items()}

    @classmethod
    def run_length(cls, config: SingleDomainConfig) -> RunLength:
        return RunLength("epochs", config.n_epochs)

    @contextlib.contextmanager
    def _frozen(self, name: str) -> Iterator[nn.Module]:
        """The plain (unwrapped) network ``name`` with its parameters frozen: gradients flow through it to its input
        but not into it, and no DDP reducer is involved."""
        net = unwrap(self.nets[name]).requires_grad_(False)
        try:
            yield net
        finally:
            net.requires_grad_(True)

    # --- the prior -------------------------------------------------------------------------------------------
    @property
    def prior(self) -> Prior:
        return getattr(self.config, "prior", "gaussian")

    def draw_prior(self, n: int, *, generator: torch.Generator | None = None,
                   device: torch.device | str = "cpu") -> torch.Tensor:
        """z ~ p(z), (n, nz): N(0, I), or U(−1, 1)^nz for ``prior="uniform"``. With a generator, drawn on the CPU
        (reproducible across devices) and moved."""
        shape = (n, self.config.nz)
        where = {"generator": generator} if generator is not None else {"device": device}
        z = torch.randn(shape, **where) if self.prior == "gaussian" else torch.rand(shape, **where) * 2 - 1
        return z.to(device)

    # --- inference -------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _inference(self, *names: str) -> Iterator[tuple[nn.Module, ...]]:
        nets = tuple(unwrap(self.nets[n]) for n in names)
        modes = {m: m.training for net in nets for m in net.modules()}
        for net in nets:
            net.eval()
        try:
            yield nets
        finally:
            for m, mode in modes.items():
                m.train(mode)

    @torch.no_grad()
    def sample(self, n: int, *, seed: int | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
        """G(z), z ~ p(z): (n, channels, H, W) in [-1, 1]; the same ``seed`` gives the same images."""
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        z = self.draw_prior(n, generator=generator, device=device)
        with self._inference("G") as (G,), self.autocast(z):
            return G(z).float()

    @torch.no_grad()
    def translate(self, x: torch.Tensor, **condition) -> torch.Tensor:
        """The deterministic reconstruction x → z → x' (:meth:`reconstruct`)."""
        if condition:
            raise TypeError(f"'{self.name}' takes no conditions, got {sorted(condition)}")
        with self._inference(*self.inference_nets) as nets, self.autocast(x):
            return self.reconstruct(x, *nets).float()

    def reconstruct(self, x: torch.Tensor, *nets: nn.Module) -> torch.Tensor:
        """x' from x through the plain inference networks (in ``inference_nets`` order), deterministically."""
        raise NotImplementedError

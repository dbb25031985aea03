"""DTN — Taigman, Polyak, Wolf. "Unsupervised Cross-Domain Image Generation", ICLR 2017 (the Domain Transfer
Network). The authors released no code; this follows the paper's formulation. Two re-implementations were read for
shapes and settings (yunjey/domain-transfer-network, TF; davrempe/domain-transfer-net, PyTorch): see "differs".

Data mode: **unpaired** — ``batch = {"real_a": s, "real_b": t}``: s from the source domain S (= A), t from the
target domain T (= B), images in [-1, 1]. Translation is one way, S → T: G(x) = g(f(x)) (``directions = ("a2b",)``).

Networks (``nets``):

* ``f`` — the fixed, pre-trained feature extractor: a TorchScript module (``f_source``: a file; the pipeline also
  makes one from the encoder of a registered model that encodes, e.g. an ``ae``), or, with ``f_source`` unset, the
  digit f built here and left at its random initialisation (tests; a random-feature baseline). It is frozen: no
  parameter requires grad, it is always in eval mode (its batch-norm statistics never move), no optimizer holds it.
  Its weights (and its TorchScript program) travel with the model: ``save_pretrained`` writes it beside the weights
  and ``from_pretrained`` builds from that copy, so a registered DTN never needs the original file. A domain with
  fewer channels than f reads is replicated (gray → RGB, as yunjey's ``grayscale_to_rgb``).
* ``g`` — the decoder from f's code (N, d) to a target image: ConvT 4×4 valid to 8·ngf at 4×4, BN, ReLU, then
  stride-2 ConvT 3×3 stages halving the channels, BN, ReLU, and a last stride-2 ConvT 3×3 to ``out_channels``, tanh.
* ``D`` — the **ternary** discriminator: Conv 3×3 s2 → ReLU → BN → ReLU, stride-2 Conv 3×3 stages doubling the
  channels with BN, ReLU, and a 4×4 valid conv to 3 logits (classes D1 = g(f(s)), D2 = g(f(t)), D3 = real t).

The digit standard config (32 px, SVHN (RGB) → MNIST (gray)) has yunjey's shapes, slim's conv biases included:
f 896,384 (the sheet's count), g 2,526,977 (the sheet's), D 1,502,979 — yunjey's binary D is 1,486,593; the
ternary head (3 logits instead of 1 on the 4×4×512 map) adds 2 × (512·16 + 1) = 16,386. davrempe's counts
(895,232 / 1,181,505 / 1,182,403) come from other layer choices (no BN in f, smaller g and D).

Objective (the paper's; d = d₂ = mean squared error; CE = softmax cross-entropy on D's 3 logits):

* ``d_fake_s`` (D, 1): CE(D(g(f(s))), D1)      ``d_fake_t`` (D, 1): CE(D(g(f(t))), D2)
  ``d_real_t`` (D, 1): CE(D(t), D3)             — together the paper's L_D
* ``gan``   (g, 1):  CE(D(g(f(s))), D3) + CE(D(g(f(t))), D3)                       L_GANG
* ``const`` (g, α):  d(f(s), f(g(f(s))))     source only: f-constancy, through the frozen f into g
* ``tid``   (g, β):  d₂(t, g(f(t)))          target only: g is the identity on T
* ``tv``    (g, γ):  mean over images, channels and pixels of ((z_{i,j+1} − z_{i,j})² + (z_{i+1,j} − z_{i,j})²)^{B/2},
  B = 1, z = g(f(s)) (the transfers)
* L_G = L_GANG + α·L_CONST + β·L_TID + γ·L_TV. Digits: α = β = 15, γ = 0 (the defaults); faces: α = 100, β = 1,
  γ = 0.05 (``FACES_WEIGHTS``; ``loss_weights: {const: 100, tid: 1, tv: 0.05}``).

Each iteration: a D step on the detached g outputs, then a g step with D frozen. Adam lr 3e-4, β (0.9, 0.999) for
g and D (yunjey's; the paper's optimiser settings were not verified), 2,000 iterations (yunjey's transfer run).

Differs from the paper / re-implementations: sums become means (L_CONST, L_TID, L_TV are averaged over elements, so
α, β, γ do not scale with the image size; the re-implementations' α = β = 15 were set on means too); TV on the
source transfers only; one D and one g step per iteration (yunjey: 1 D : 6 G on source, 2 D : 4 G on target, an f
step every 15 iterations — f is trained by L_CONST there; it stays fixed here as in the paper); yunjey's D is binary.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from i2i_models import losses
from i2i_models.base import I2IModel, LossTerm, RunLength, StepOutput, unwrap
from i2i_models.registry import register_model

D1_FAKE_SOURCE, D2_FAKE_TARGET, D3_REAL_TARGET = 0, 1, 2  # the ternary D's classes
FACES_WEIGHTS = {"const": 100.0, "tid": 1.0, "tv": 0.05}  # the paper's face → emoji weights


@dataclass(frozen=True, kw_only=True)
class DTNConfig:
    image_size: int = 32  # a power of two ≥ 8
    in_channels: int = 3  # source S (SVHN: RGB)
    out_channels: int = 1  # target T (MNIST: gray); g's output
    f_source: str | None = None  # a TorchScript file of the fixed f; None: the digit f below, randomly initialised
    f_channels: int = 3  # channels f reads (a domain with fewer is replicated: gray → RGB)
    nef: int = 64  # the built-in digit f: nef, 2·nef, 4·nef channels, then f_dim (64, 128, 256 → 128)
    f_dim: int = 128  # the built-in f's code size (a TorchScript f's is read off its output)
    ngf: int = 64  # g: 8·ngf at 4×4, halving per stage (512, 256, 128 at 32 px)
    ndf: int = 128  # D: ndf, doubling per stage (128, 256, 512 at 32 px)
    lr: float = 3e-4
    beta1: float = 0.9
    beta2: float = 0.999
    iterations: int = 2000

    def __post_init__(self) -> None:
        if self.image_size < 8 or self.image_size & (self.image_size - 1):
            raise ValueError(f"image_size must be a power of two ≥ 8, got {self.image_size}")
        for name in ("in_channels", "out_channels"):
            if getattr(self, name) not in (1, self.f_channels):
                raise ValueError(f"{name}={getattr(self, name)}: f reads {self.f_channels} channels (a 1-channel "
                                 "domain is replicated)")


def _stages(image_size: int) -> int:
    return int(math.log2(image_size)) - 2  # stride-2 stages between 4×4 and image_size


class DigitF(nn.Sequential):
    """yunjey's content extractor: 3 × [Conv 3×3 s2 (bias), BN, ReLU] (nef, 2nef, 4nef), then a valid conv to 1×1
    (4×4 at 32 px) to f_dim, BN, tanh → (N, f_dim, 1, 1). 896,384 parameters at nef 64, f_dim 128."""

    def __init__(self, channels: int, *, nef: int, f_dim: int, image_size: int):
        layers: list[nn.Module] = []
        for c_in, c_out in ((channels, nef), (nef, 2 * nef), (2 * nef, 4 * nef)):
            layers += [nn.Conv2d(c_in, c_out, 3, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU()]
        layers += [nn.Conv2d(4 * nef, f_dim, image_size // 8), nn.BatchNorm2d(f_dim), nn.Tanh()]
        super().__init__(*layers)


class Decoder(nn.Sequential):
    """g: code (N, d, 1, 1) → image (N, out_channels, image_size, image_size) in [-1, 1]."""

    def __init__(self, f_dim: int, out_channels: int, *, ngf: int, image_size: int):
        ch = 8 * ngf
        layers: list[nn.Module] = [nn.ConvTranspose2d(f_dim, ch, 4), nn.BatchNorm2d(ch), nn.ReLU()]
        for _ in range(_stages(image_size) - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 3, 2, 1, output_padding=1), nn.BatchNorm2d(ch // 2),
                       nn.ReLU()]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, out_channels, 3, 2, 1, output_padding=1), nn.Tanh()]
        super().__init__(*layers)


class TernaryDiscriminator(nn.Sequential):
    """D: image → 3 logits (D1 g(f(source)), D2 g(f(target)), D3 real target)."""

    def __init__(self, channels: int, *, ndf: int, image_size: int, classes: int = 3):
        layers: list[nn.Module] = [nn.Conv2d(channels, ndf, 3, 2, 1), nn.ReLU(), nn.BatchNorm2d(ndf), nn.ReLU()]
        ch = ndf
        for _ in range(_stages(image_size) - 1):
            layers += [nn.Conv2d(ch, 2 * ch, 3, 2, 1), nn.BatchNorm2d(2 * ch), nn.ReLU()]
            ch *= 2
        layers += [nn.Conv2d(ch, classes, 4), nn.Flatten()]
        super().__init__(*layers)


@contextlib.contextmanager
def quiet_jit():
    """TorchScript is the format f comes in; torch ≥ 2.10 marks torch.jit deprecated (a FutureWarning per call)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        yield


def _load_script(data: bytes) -> torch.jit.ScriptModule:
    with quiet_jit():
        return torch.jit.load(io.BytesIO(data), map_location="cpu")


class FixedF(nn.Module):
    """The fixed f: a TorchScript module that never trains (no grad, always eval). Pickles (Ray) through its
    TorchScript bytes."""

    def __init__(self, net: torch.jit.ScriptModule):
        super().__init__()
        for p in net.parameters():  # (ScriptModules have no requires_grad_)
            p.requires_grad_(False)
        self.net = net.eval()

    def train(self, mode: bool = True) -> FixedF:
        self.training = mode
        self.net.eval()  # batch norm in f keeps its running statistics: f never changes
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)  # (N, d)

    def script_bytes(self) -> bytes:
        buf = io.BytesIO()
        with quiet_jit():
            torch.jit.save(self.net, buf)
        return buf.getvalue()

    def __reduce__(self):
        return _fixed_from_bytes, (self.script_bytes(),)


def _fixed_from_bytes(data: bytes) -> FixedF:
    return FixedF(_load_script(data))


def load_f(path: str) -> torch.jit.ScriptModule:
    """f from a TorchScript file; a clear error when it is missing or is not TorchScript."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"DTN's f_source {path!r}: no such file (f must be a TorchScript file of the fixed, "
                                "pretrained feature extractor; it is never downloaded)")
    try:
        with quiet_jit():
            return torch.jit.load(path, map_location="cpu")
    except RuntimeError as err:
        raise ValueError(f"DTN's f_source {path!r} is not a TorchScript file ({str(err).splitlines()[0]})") from None


@register_model("dtn")
class DTN(I2IModel):
    data_mode = "unpaired"
    directions = ("a2b",)
    loss_terms = (
        LossTerm("gan", 1.0, "g", "L_GANG: CE(D(g(f(s))), D3) + CE(D(g(f(t))), D3)"),
        LossTerm("const", 15.0, "g", "α · MSE(f(s), f(g(f(s)))): f-constancy on the source, f fixed"),
        LossTerm("tid", 15.0, "g", "β · MSE(t, g(f(t))): target identity"),
        LossTerm("tv", 0.0, "g", "γ · anisotropic TV (B = 1) of g(f(s)); faces: 0.05"),
        LossTerm("d_fake_s", 1.0, "D", "CE(D(g(f(s))), D1)"),
        LossTerm("d_fake_t", 1.0, "D", "CE(D(g(f(t))), D2)"),
        LossTerm("d_real_t", 1.0, "D", "CE(D(t), D3)"),
    )
    inference_nets = ("f", "g")
    file_config_keys = ("f_source",)
    Config = DTNConfig
    config: DTNConfig

    def __init__(self, config: DTNConfig, *, loss_weights=None, f: torch.jit.ScriptModule | None = None):
        """``f``: the fixed f as a module (export); else read from ``config.f_source``, or the built-in digit f."""
        super().__init__(config, loss_weights=loss_weights)
        c = config
        if f is None:
            with quiet_jit():
                f = load_f(c.f_source) if c.f_source else torch.jit.script(
                    DigitF(c.f_channels, nef=c.nef, f_dim=c.f_dim, image_size=c.image_size))
        self.nets["f"] = FixedF(f)
        self.nets["g"] = Decoder(self._code_size(), c.out_channels, ngf=c.ngf, image_size=c.image_size)
        self.nets["D"] = TernaryDiscriminator(c.out_channels, ndf=c.ndf, image_size=c.image_size)

    def _code_size(self) -> int:
        """d, read off f's output on one blank image (f must give (N, d) or (N, d, 1, 1))."""
        c = self.config
        probe = torch.zeros(1, c.f_channels, c.image_size, c.image_size)
        try:
            with torch.no_grad():
                code = self.nets["f"].net(probe)
        except RuntimeError as err:
            raise ValueError(f"f rejects {c.image_size}×{c.image_size} images of {c.f_channels} channels "
                             f"({str(err).splitlines()[0]}): set image_size / f_channels to what f reads") from None
        if code.dim() not in (2, 4) or code.shape[2:] not in ((), (1, 1)):
            raise ValueError(f"f must output a code (N, d) or (N, d, 1, 1); it gives {tuple(code.shape)}")
        return code.shape[1]

    # --- persistence: f travels with the weights --------------------------------------------------------------
    def save_file(self, key: str, path: str) -> None:
        with open(path, "wb") as out:
            out.write(unwrap(self.nets["f"]).script_bytes())

    def export(self) -> DTN:
        """f (from the module, not the file, which may be gone) and g, on the CPU."""
        f = _load_script(unwrap(self.nets["f"]).script_bytes())
        copy = type(self)(self.config, loss_weights=self.loss_weights, f=f)
        del copy.nets["D"]
        copy.nets["g"].load_state_dict({k: v.detach().cpu() for k, v in unwrap(self.nets["g"]).state_dict().items()})
        return copy.eval()

    # --- optimisation ---------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        return {name: torch.optim.Adam(self.nets[name].parameters(), lr=c.lr, betas=(c.beta1, c.beta2))
                for name in ("g", "D")}

    @classmethod
    def run_length(cls, config: DTNConfig) -> RunLength:
        return RunLength("iterations", config.iterations)

    # --- training -------------------------------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) (N, d), a domain of fewer channels than f reads replicated (gray → RGB)."""
        if x.shape[1] != self.config.f_channels:
            x = x.expand(-1, self.config.f_channels, -1, -1)
        return self.nets["f"](x)

    def decode(self, code: torch.Tensor, g: nn.Module | None = None) -> torch.Tensor:
        return (g or self.nets["g"])(code[:, :, None, None])

    def train_step(self, batch, step: int) -> StepOutput:
        s, t = batch["real_a"], batch["real_b"]
        with self.autocast(s):
            f_s, f_t = self.features(s), self.features(t)  # f is fixed: constants of this step
            fake_s, fake_t = self.decode(f_s), self.decode(f_t)  # G(s) = g(f(s)) and g(f(t))
        d_raw = self._discriminator_losses(t, fake_s.detach(), fake_t.detach(), self.nets["D"])
        self.step_nets(("D",), self.weighted(d_raw, "D"))
        D = unwrap(self.nets["D"]).requires_grad_(False)  # g step: D frozen, outside its DDP wrapper
        try:
            g_raw = self.generator_losses(s, t, f_s, fake_s, fake_t, D)
        finally:
            D.requires_grad_(True)
        self.step_nets(("g",), self.weighted(g_raw, "g"))
        raw = {k: v.detach() for k, v in {**g_raw, **d_raw}.items()}
        shown = {"real_a": s, "fake_b": fake_s, "real_b": t, "idt_b": fake_t}
        return StepOutput(losses=raw, images={k: v.detach().float() for k, v in shown.items()})

    def _discriminator_losses(self, t, fake_s, fake_t, D) -> dict[str, torch.Tensor]:
        with self.autocast(t):
            logits = [D(x).float() for x in (fake_s, fake_t, t)]
        return {name: _ce(lg, cls) for name, lg, cls in zip(
            ("d_fake_s", "d_fake_t", "d_real_t"), logits, (D1_FAKE_SOURCE, D2_FAKE_TARGET, D3_REAL_TARGET))}

    def generator_losses(self, s, t, f_s, fake_s, fake_t, D) -> dict[str, torch.Tensor]:
        with self.autocast(s):
            gan = _ce(D(fake_s).float(), D3_REAL_TARGET) + _ce(D(fake_t).float(), D3_REAL_TARGET)
            f_fake = self.features(fake_s)  # gradient through the frozen f into g
        return {"gan": gan, "const": losses.mse(f_fake.float(), f_s.float().detach()),
                "tid": losses.mse(fake_t.float(), t.float()), "tv": total_variation(fake_s.float())}

    # --- inference ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def translate(self, x: torch.Tensor, *, direction: str = "a2b", **condition: Any) -> torch.Tensor:
        """S → T: g(f(x)) in eval mode."""
        if condition:
            raise TypeError(f"{self.name}.translate takes only `direction`; unknown condition(s) {sorted(condition)}")
        if direction != "a2b":
            raise ValueError(f"DTN translates one way, source → target (a2b: g(f(x))); it has no {direction!r}")
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"DTN takes (N, {self.config.in_channels}, H, W) source images, got {tuple(x.shape)}")
        g = unwrap(self.nets["g"])
        was_training = g.training
        g.eval()
        try:
            with self.autocast(x):
                return self.decode(self.features(x), g).float()
        finally:
            g.train(was_training)


def _ce(logits: torch.Tensor, cls: int) -> torch.Tensor:
    return F.cross_entropy(logits, torch.full((logits.shape[0],), cls, dtype=torch.long, device=logits.device))


def total_variation(z: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """The paper's anisotropic TV with exponent B (= 1): ((z_{i,j+1} − z_{i,j})² + (z_{i+1,j} − z_{i,j})²)^{B/2},
    averaged over images, channels and the (H − 1)(W − 1) pixels that have both neighbours. The square is clamped
    at 1e-12 before the root (the root's gradient at 0 is infinite)."""
    dx = z[:, :, :-1, 1:] - z[:, :, :-1, :-1]
    dy = z[:, :, 1:, :-1] - z[:, :, :-1, :-1]
    return (dx.pow(2) + dy.pow(2)).clamp_min(1e-12).pow(beta / 2).mean()

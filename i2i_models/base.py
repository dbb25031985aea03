"""The model contract every family implements.

A family declares, as data: ``data_mode``, its ``loss_terms`` (name, the paper's default weight, the optimizer
group it trains), its hyper-parameters as a frozen keyword-only ``Config`` dataclass, and its networks in one
``nn.ModuleDict`` ``self.nets`` with direction-stating names (the unit of DDP wrapping, checkpointing and export).
``train_step(batch, step)`` reads like the authors' algorithm and returns the raw value of every term; the weights
are applied in exactly one place, :meth:`I2IModel.weighted`. ``translate(x, **condition)`` is inference.

How a run is driven is declared too, in the authors' units: :meth:`I2IModel.run_length` (epochs for pix2pix and
CycleGAN, iterations for UNIT, MUNIT and StarGAN v2) and :meth:`I2IModel.lr_factor`, the learning-rate multiplier of
one iteration, given its global ``step`` (0-based, counted in optimizer steps at the run's global batch) and the
``epoch`` it falls in. The trainer applies it before every iteration, so a family whose authors step their scheduler
per iteration (StepLR in UNIT/MUNIT) and one whose authors step it per epoch (pix2pix/CycleGAN) are both exact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn

DataMode = Literal["paired", "unpaired", "labeled", "single"]
CONFIG_FILE, WEIGHTS_FILE = "config.json", "nets.pt"


@dataclass(frozen=True)
class RunLength:
    """How long the authors train: ``value`` epochs (passes over the training set) or iterations (optimizer steps,
    each over one global batch)."""

    unit: Literal["epochs", "iterations"]
    value: int


@dataclass(frozen=True)
class LossTerm:
    name: str
    weight: float  # the paper's / authors' default
    group: str  # the optimizer group (network) this term trains, e.g. "G" or "D"
    doc: str = ""


@dataclass
class StepOutput:
    losses: dict[str, torch.Tensor]  # raw (unweighted), detached, one per term
    images: dict[str, torch.Tensor] = field(default_factory=dict)  # detached, for sample grids


def unwrap(net: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel (or any ``.module``) wrapper."""
    return getattr(net, "module", net)


class I2IModel(nn.Module):
    name: ClassVar[str]
    data_mode: ClassVar[DataMode]
    loss_terms: ClassVar[tuple[LossTerm, ...]]
    inference_nets: ClassVar[tuple[str, ...]]  # what ``export`` keeps
    Config: ClassVar[type]
    multimodal: ClassVar[bool] = False  # translate() draws a style (seed / reference): many outputs per input
    # paired families trained semi-supervised (Triangle GAN): the feed splits the pairs by ``config.paired_fraction``
    # into pairs and unpaired samples of each domain (pipelines.feeds)
    semi_paired: ClassVar[bool] = False
    # single-domain families (data mode "single"): does translate(x) reconstruct x through a code (x → z → x')?
    # Families that only generate (GAN) have no translate; every single-domain family has sample()
    encodes: ClassVar[bool] = False
    # Config keys that configs saved by earlier versions may carry and that no longer mean anything: dropped by
    # from_pretrained (a checkpoint stays loadable), rejected everywhere else like any unknown key
    legacy_config_keys: ClassVar[frozenset[str]] = frozenset()
    # unpaired families: the directions translate() takes (DTN maps only source → target: ("a2b",))
    directions: ClassVar[tuple[str, ...]] = ("a2b", "b2a")
    # Config keys naming a file the model is built from (DTN's fixed f): save_pretrained writes the model's own copy
    # beside the weights under the key's name (``save_file``), from_pretrained builds from that copy — a saved model
    # never needs the original file
    file_config_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any, *, loss_weights: Mapping[str, float] | None = None):
        super().__init__()
        self.config = config
        self.loss_weights = self.resolve_weights(loss_weights or {})
        self.nets = nn.ModuleDict()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.amp_dtype: torch.dtype | None = None  # e.g. torch.bfloat16: autocast on the inputs' device

    # --- loss weights: looked up by name everywhere, applied only here ---------------------------------------
    @classmethod
    def default_weights(cls) -> dict[str, float]:
        return {t.name: t.weight for t in cls.loss_terms}

    @classmethod
    def resolve_weights(cls, overrides: Mapping[str, float]) -> dict[str, float]:
        weights = cls.default_weights()
        unknown = sorted(set(overrides) - set(weights))
        if unknown:
            raise KeyError(
                f"unknown loss term(s) {unknown} for model '{cls.name}'; valid: {', '.join(sorted(weights))}"
            )
        weights.update({k: float(v) for k, v in overrides.items()})
        return weights

    def weighted(self, raw: Mapping[str, torch.Tensor], group: str) -> torch.Tensor:
        """Σ weight·term over the terms of ``group`` present in ``raw`` — the only place weights are applied."""
        terms = [self.loss_weights[t.name] * raw[t.name] for t in self.loss_terms if t.group == group
                 and t.name in raw]
        return torch.stack(terms).sum() if terms else torch.zeros(())

    # --- what a family implements --------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def lr_factor(self, *, step: int, epoch: int) -> float:
        """Multiplier of the base learning rate for iteration ``step`` (0-based global step), which falls in
        ``epoch`` (0-based); constant unless a family says otherwise."""
        return 1.0

    @classmethod
    def run_length(cls, config: Any) -> RunLength:
        """Length of the authors' run for ``config``, in the unit the authors count it in."""
        raise NotImplementedError

    def train_step(self, batch: Mapping[str, torch.Tensor], step: int) -> StepOutput:
        raise NotImplementedError

    def translate(self, x: torch.Tensor, **condition: Any) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, n: int, *, seed: int | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
        """``n`` new images (N, 3, H, W) in [-1, 1] drawn from the prior, reproducibly for one ``seed``
        (single-domain families)."""
        raise NotImplementedError(f"model '{self.name}' does not sample from a prior")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # so a logged model serves like any nn.Module
        return self.translate(x)

    def example_batch(self, n: int = 2, size: int | None = None, *, generator: torch.Generator | None = None,
                      device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """A random batch of what ``train_step`` reads for this data mode (images in [-1, 1], ``size`` px,
        default ``image_size``): for tests and benchmarks."""
        size = size or self.config.image_size
        img = lambda: (torch.rand(n, 3, size, size, generator=generator) * 2 - 1).to(device)  # noqa: E731
        if self.data_mode == "paired":
            return {"input": img(), "target": img()}
        if self.data_mode == "unpaired":
            return {"real_a": img(), "real_b": img()}
        if self.data_mode == "single":
            return {"image": img()}
        if self.data_mode == "labeled":  # a source image and its domain; two references of the target domain
            domain = lambda: torch.randint(0, self.config.num_domains, (n,), generator=generator).to(device)  # noqa
            return {"image": img(), "domain": domain(), "ref": img(), "ref2": img(), "ref_domain": domain()}
        raise NotImplementedError(f"no example batch for data mode {self.data_mode}")

    # --- helpers for families ------------------------------------------------------------------------------
    def autocast(self, x: torch.Tensor):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=x.device.type, dtype=self.amp_dtype)

    def setup_optimizers(self) -> None:
        """(Re)create optimizers over the current ``nets`` (call after wrapping them, e.g. in DDP)."""
        self.optimizers = self.configure_optimizers()

    @staticmethod
    def step_optimizer(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def step_nets(self, names: Sequence[str], loss: torch.Tensor) -> None:
        """One backward of ``loss``, then a step of the optimizer of every listed network (the authors' joint
        optimizer over several nets); a loss with no gradient (every term weighted 0) steps nothing."""
        opts = [self.optimizers[n] for n in names]
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        if loss.requires_grad:
            loss.backward()
        for opt in opts:
            opt.step()

    # --- persistence: the config travels with the weights --------------------------------------------------
    def describe(self) -> dict:
        return {"model": self.name, "config": dataclasses.asdict(self.config), "loss_weights": self.loss_weights}

    def save_file(self, key: str, path: str) -> None:
        """Write the file config key ``key`` names (see ``file_config_keys``) to ``path``."""
        raise NotImplementedError

    def save_pretrained(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        desc = self.describe()
        for key in self.file_config_keys:
            if desc["config"].get(key) is not None:
                self.save_file(key, os.path.join(directory, key))
                desc["config"][key] = key  # relative: the copy beside config.json
        with open(os.path.join(directory, CONFIG_FILE), "w") as f:
            json.dump(desc, f, indent=1)
        torch.save({k: unwrap(v).state_dict() for k, v in self.nets.items()}, os.path.join(directory, WEIGHTS_FILE))

    @staticmethod
    def from_pretrained(directory: str) -> I2IModel:
        from i2i_models.registry import get_model, get_model_class

        with open(os.path.join(directory, CONFIG_FILE)) as f:
            desc = json.load(f)
        cls = get_model_class(desc["model"])
        config = {k: os.path.join(directory, v) if k in cls.file_config_keys and v is not None else v
                  for k, v in desc["config"].items() if k not in cls.legacy_config_keys}
        model = get_model(desc["model"], loss_weights=desc["loss_weights"], **config)
        state = torch.load(os.path.join(directory, WEIGHTS_FILE), map_location="cpu", weights_only=True)
        model.load_nets(state)
        return model

    def load_nets(self, state: Mapping[str, Mapping[str, torch.Tensor]], *, strict: bool = True) -> None:
        for k, sd in state.items():
            if k in self.nets:
                unwrap(self.nets[k]).load_state_dict(sd)
            elif strict:
                raise KeyError(f"checkpoint has network '{k}' that model '{self.name}' does not")

    def export(self) -> I2IModel:
        """A CPU copy holding only the inference networks (what gets registered and served)."""
        from i2i_models.registry import get_model

        copy = get_model(self.name, loss_weights=self.loss_weights, **dataclasses.asdict(self.config))
        for k in list(copy.nets):
            if k not in self.inference_nets:
                del copy.nets[k]
        copy.load_nets({k: {n: t.detach().cpu() for n, t in unwrap(v).state_dict().items()}
                        for k, v in self.nets.items() if k in self.inference_nets})
        return copy.eval()

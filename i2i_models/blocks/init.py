"""Weight initialisation, as the authors' ``init_weights``."""

from __future__ import annotations

from typing import Literal

from torch import nn


def init_weights(net: nn.Module, kind: Literal["normal", "xavier", "kaiming", "orthogonal"] = "normal",
                 gain: float = 0.02) -> nn.Module:
    """Conv/Linear weights ~ N(0, gain) (pix2pix/CycleGAN default) or the named scheme; biases 0;
    BatchNorm weight ~ N(1, gain), bias 0."""

    def apply(m: nn.Module) -> None:
        name = type(m).__name__
        if hasattr(m, "weight") and m.weight is not None and ("Conv" in name or "Linear" in name):
            if kind == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif kind == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif kind == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            elif kind == "orthogonal":
                nn.init.orthogonal_(m.weight, gain=gain)
            else:
                raise ValueError(f"unknown init '{kind}'")
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif "BatchNorm2d" in name and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)

    net.apply(apply)
    return net

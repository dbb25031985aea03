"""Exponential moving average of a network's weights (StarGAN v2 §3 / authors' ``moving_average``).

The averaged copy is an ordinary module (an entry of ``model.nets`` with ``requires_grad=False``), so it is
checkpointed and exported like any other network and is never wrapped in DDP. Every rank applies the same update to
identical (all-reduced) weights, so the copies stay identical across ranks without communication.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_copy(source: nn.Module) -> nn.Module:
    """A frozen copy of ``source`` to average into (the authors start the average at the initial weights)."""
    return copy.deepcopy(source).requires_grad_(False)


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, beta: float = 0.999) -> None:
    """θ_target ← β·θ_target + (1 − β)·θ_source for every parameter; buffers are copied."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.mul_(beta).add_(s.detach(), alpha=1.0 - beta)
    for t, s in zip(target.buffers(), source.buffers(), strict=True):
        t.copy_(s)


@torch.no_grad()
def ema_reset(target: nn.Module, source: nn.Module) -> None:
    """Restart the average at ``source``'s current weights."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.copy_(s)
    for t, s in zip(target.buffers(), source.buffers(), strict=True):
        t.copy_(s)

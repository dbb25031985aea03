"""Exponential moving average of a network's weights (StarGAN v2 §3 / authors' ``moving_average``).

The averaged copy is an ordinary module (an entry of ``model.nets`` with ``requires_grad=False``), so it is
checkpointed and exported like any other network and is never wrapped in DDP. Every rank applies the same update to
identical (all-reduced) weights, so the copies stay identical across ranks without communication — provided they
start identical: the trainer builds the model from the same seed on every rank.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_copy(source: nn.Module) -> nn.Module:
    """A frozen copy of ``source`` to average into, holding ``source``'s weights as they are now.

    Where the average starts is the caller's choice. StarGAN v2's authors copy the networks in ``build_model``,
    *before* ``Solver.__init__`` applies ``he_init`` to the non-EMA networks only (core/model.py, core/solver.py), so
    their averages start at PyTorch's default initialisation; ``stargan_v2.py`` copies at the same point."""
    return copy.deepcopy(source).requires_grad_(False)


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, beta: float = 0.999) -> None:
    """θ_target ← β·θ_target + (1 − β)·θ_source for every parameter; buffers are copied."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.mul_(beta).add_(s.detach(), alpha=1.0 - beta)
    for t, s in zip(target.buffers(), source.buffers(), strict=True):
        t.copy_(s)

"""A slowly moving copy of a network: the key encoder of MoCo, the target network of BYOL.

    target = momentum_copy(model, m)         # same weights, no gradients, never in an optimizer
    ema_update(target, model, m)             # after each optimizer step: t <- m t + (1 - m) o
    byol_momentum(base, progress)            # BYOL's schedule: base -> 1 along a half cosine

Only parameters move by the average. BatchNorm's running statistics are the target's own: it runs
in train mode on its own batches, as in MoCo's and BYOL's code.
"""
import copy
import math

import torch
import torch.nn as nn


def momentum_copy(model: nn.Module, momentum: float) -> nn.Module:
    """A deep copy whose parameters never require gradients, to follow `model` with `momentum`
    (checked here, once for MoCo and BYOL: 0 <= m < 1)."""
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    target = copy.deepcopy(model)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, m: float) -> None:
    """target_p <- m * target_p + (1 - m) * online_p for every parameter, in order."""
    t_params, o_params = list(target.parameters()), list(online.parameters())
    if len(t_params) != len(o_params):
        raise ValueError("target and online networks differ in their parameters")
    torch._foreach_lerp_(t_params, [p.detach() for p in o_params], 1.0 - m)


def byol_momentum(base: float, progress: float) -> float:
    """BYOL's tau_k = 1 - (1 - base) (cos(pi k / K) + 1) / 2, progress = k / K in [0, 1]."""
    return 1 - (1 - base) * (math.cos(math.pi * min(max(progress, 0.0), 1.0)) + 1) / 2

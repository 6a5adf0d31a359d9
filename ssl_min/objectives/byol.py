"""BYOL (Grill et al., NeurIPS 2020): no negatives; an online network learns to predict a slowly
moving target network's projection of the other view.

    online:  z = projector(encoder(view a)),  p = predictor(z)
    target:  z' = target(view b)        a momentum copy of the online network, no gradient
    l(p, z') = || p/|p| - z'/|z'| ||^2 = 2 - 2 cos(p, z')
    loss = mean_i l(p1_i, z'2_i) + mean_i l(p2_i, z'1_i)          (the paper's L + L~)

Two asymmetries keep it from collapsing: the predictor exists only on the online side, and the
target follows by an exponential moving average whose momentum rises from `base` to 1 along a
half cosine (ssl_min/objectives/momentum.py). Predictor as in the paper: Linear - BatchNorm - ReLU - Linear,
here proj_dim -> proj_hidden -> proj_dim. Under torchrun the predictor is DDP-wrapped like the
model, so its gradients are averaged too.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ssl_min.objectives.base import Objective
from ssl_min.objectives.momentum import byol_momentum, ema_update, momentum_copy


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """p, z: (N, D) -> (N,) the normalised squared distance 2 - 2 cos(p, z)."""
    return 2 - 2 * F.cosine_similarity(p, z, dim=-1)


class BYOL(Objective):
    def __init__(self, model: nn.Module, dim: int, hidden: int, momentum: float = 0.99):
        super().__init__()
        self.target = momentum_copy(model, momentum)
        self.own("predictor", nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                            nn.Linear(hidden, dim)))      # trained; DDP-wrapped as self.run
        self.base_momentum = momentum

    def forward(self, model, x, ids=None, groups=1):
        p = self.run(model(x, groups=groups))                           # the predictor: (2N, D)
        with torch.no_grad():
            t = self.target(x, groups=groups)
        with torch.autocast(device_type=x.device.type, enabled=False):
            p1, p2 = p.float().chunk(2)
            t1, t2 = t.float().chunk(2)
            return byol_loss(p1, t2).mean() + byol_loss(p2, t1).mean()

    def after_step(self, online, progress):
        ema_update(self.target, online, byol_momentum(self.base_momentum, progress))

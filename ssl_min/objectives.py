"""`--objective`: which way to learn without labels. One name, one file:

    simclr  ssl_min/loss.py    NT-Xent, the batch's other clips as negatives (CLMR; the default)
    moco    ssl_min/moco.py    a momentum key encoder and a queue of negatives (MoCo v2)
    vicreg  ssl_min/vicreg.py  invariance + variance + covariance, no negatives
    byol    ssl_min/byol.py    a predictor chasing a momentum target, no negatives
"""
from ssl_min.byol import BYOL
from ssl_min.loss import SimCLR
from ssl_min.moco import MoCo
from ssl_min.vicreg import VICReg

OBJECTIVES = ("simclr", "moco", "vicreg", "byol")


def build_objective(cfg, model):
    """-> the Objective for cfg.objective; `model` is the online ContrastiveModel (not DDP-wrapped)."""
    if cfg.objective == "simclr":
        return SimCLR(cfg.temperature)
    if cfg.objective == "moco":
        return MoCo(model, cfg.proj_dim, cfg.queue_size, cfg.momentum, cfg.temperature)
    if cfg.objective == "vicreg":
        return VICReg()
    if cfg.objective == "byol":
        return BYOL(model, cfg.proj_dim, cfg.proj_hidden, cfg.momentum)
    raise ValueError(f"unknown objective {cfg.objective!r}; choose from {OBJECTIVES}")

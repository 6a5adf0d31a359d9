"""Objectives: the ways to learn without labels, one file each, behind `--objective`.

    base.py     what an objective is (Objective), and gathering embeddings across processes
    simclr.py   simclr: NT-Xent, the batch's other clips as negatives (CLMR; the default)
    moco.py     moco: a momentum key encoder and a queue of negatives (MoCo v2)
    vicreg.py   vicreg: invariance + variance + covariance, no negatives
    byol.py     byol: a predictor chasing a momentum target, no negatives
    cpc.py      cpc: predict the track's next frames from its past, contrastively (InfoNCE)
    masked.py   masked: hide spans of frames, predict the teachers' tokens and spectrum there (HuBERT, MERT)
    teachers.py the masked objective's targets: log-mel + chroma (tokenised), a semitone spectrum
    momentum.py the momentum copy MoCo and BYOL share
"""
from ssl_min.objectives.base import Objective, gather_with_grad
from ssl_min.objectives.byol import BYOL, byol_loss
from ssl_min.objectives.cpc import CPC, cpc_loss
from ssl_min.objectives.masked import Masked, masked_loss, span_mask
from ssl_min.objectives.moco import MoCo
from ssl_min.objectives.simclr import NTXent, SimCLR
from ssl_min.objectives.vicreg import VICReg, vicreg_loss

OBJECTIVES = ("simclr", "moco", "vicreg", "byol", "cpc", "masked")

__all__ = ["Objective", "gather_with_grad", "BYOL", "byol_loss", "CPC", "cpc_loss", "Masked", "masked_loss", "span_mask", "MoCo", "NTXent", "SimCLR", "VICReg", "vicreg_loss",
           "OBJECTIVES", "build_objective"]


def build_objective(cfg, model):
    """-> the Objective for cfg.objective; `model` is the online ContrastiveModel, or for CPC the
    FrameModel, for masked the MaskedModel (not DDP-wrapped)."""
    if cfg.objective == "simclr":
        return SimCLR(cfg.temperature)
    if cfg.objective == "moco":
        return MoCo(model, cfg.proj_dim, cfg.queue_size, cfg.momentum, cfg.temperature)
    if cfg.objective == "vicreg":
        return VICReg()
    if cfg.objective == "byol":
        return BYOL(model, cfg.proj_dim, cfg.proj_hidden, cfg.momentum)
    if cfg.objective == "cpc":
        return CPC(model.encoder.out_dim, cfg.cpc_context, cfg.cpc_steps)
    if cfg.objective == "masked":
        return Masked(model.encoder.out_dim, cfg.sample_rate, 3 ** (cfg.n_blocks + 1), cfg.mask_tokens, cfg.mask_prob,
                      cfg.mask_span, cfg.w_tokens, cfg.w_spectrum, cfg.mask_mix)
    raise ValueError(f"unknown objective {cfg.objective!r}; choose from {OBJECTIVES}")

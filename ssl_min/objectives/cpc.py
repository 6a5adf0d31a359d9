"""CPC (van den Oord et al. 2018, "Representation Learning with Contrastive Predictive Coding"):
learn by predicting, contrastively, what comes next in the same recording.

    x (N, 1, T)  --encoder, no final pooling-->  z (N, T', D)    one latent frame per 3^(n_blocks+1) samples
    z            --GRU, causal-->                c (N, T', H)    c_t summarises z_1 .. z_t
    for k = 1..K:  score(z_j, t, k) = z_j . W_k c_t              a linear predictor per offset
    loss = mean over k of mean over (n, t < T'-k) of
           -log( exp(score(z_{n,t+k})) / sum_{j in candidates} exp(score(z_j)) )      InfoNCE

The candidates of (n, t, k) are the positive z_{n,t+k} and the negatives: every other time step of
the same track (z_{n,s}, s != t+k), which CPC needs to learn about time at all, and the same time
step of every other track in the batch (z_{m,t+k}, m != n), on every process under DDP (gathered
as NT-Xent gathers them, ssl_min/objectives/base.py), which keep it from learning only what makes
one recording unlike another. The paper draws its negatives "from the same sequence and from other
sequences in the batch"; taking all of these two sets costs N T'^2 D + T' N^2 D multiply-adds per
k, where every frame of the batch would cost (N T')^2 D: on a CPU a step 11x as long (bench/cpc.py).
Rows of two chunks of one track (a small folder) are not each other's negatives (ids).

Choices, from the paper and by measurement (bench/demo_log.md has the runs):
* the encoder's frames: SampleCNN without its final pooling. With 4 blocks a frame is 243 samples
  (30 ms at 8 kHz, 11 ms at 22.05 kHz; the paper: 10 ms at 16 kHz), and a chunk is 64 frames (the
  paper: 128 frames of 20480 samples), half the paper's, for a CPU's step.
* K = 12 offsets and a GRU context of 256, the paper's. The predictors W_k have no bias. On a
  2-core CPU a step as shipped costs 3.3x the demo's SimCLR step, 128-frame chunks 2.7x more, and a
  context of 128 no less (bench/cpc.py prints each choice's cost side by side).
* no effects on the audio (CPC's signal is time, not invariance): the objective's defaults in
  ssl_min/config.py set every effect's probability to 0; flags can ask for them.
* the representation probed and exported is the encoder's, as for the other objectives: measured on
  the demo's validation split (bench/cpc_context.py), the encoder read at every block (probe.py's
  --features auto) beat the context network's output, its mean over time and its last step alike,
  on the tags and on the styles; so the GRU is a training device, like SimCLR's projector.

Causality: c_t depends on z_1 .. z_t only (a unidirectional GRU), and z_t on the audio up to the
end of its receptive field (tests change the audio after it and find c_<=t unchanged, in eval
mode: in training mode BatchNorm's statistics are means over the whole batch, every time step of
every track, as in the other objectives).
"""
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from ssl_min.objectives.base import Objective, gather_with_grad


class ContextPredictor(nn.Module):
    """z (N, T', D) -> (c (N, T', H): the GRU's causal summary, preds (N, T', K, D): W_k c_t)."""

    def __init__(self, dim: int, context: int = 256, steps: int = 12):
        super().__init__()
        self.gru = nn.GRU(dim, context, batch_first=True)
        self.predict = nn.Linear(context, steps * dim, bias=False)          # W_1 .. W_K stacked
        self.steps, self.dim = steps, dim

    def forward(self, z: torch.Tensor):
        c, _ = self.gru(z)
        return c, self.predict(c).unflatten(-1, (self.steps, self.dim))


def cpc_loss(z: torch.Tensor, preds: torch.Tensor, ids: torch.Tensor = None) -> torch.Tensor:
    """z: (N, T', D) this process's frames, preds: (N, T', K, D), ids: (N,) optional track ids
    -> the InfoNCE loss averaged over t and then over k (see the module doc for the candidates).
    Needs T' > K: each offset must have at least one (t, t+k) pair."""
    n, frames, _ = z.shape
    steps = preds.shape[2]
    if frames <= steps:
        raise ValueError(f"CPC needs more frames than offsets: {frames} frames, K = {steps}; use a longer chunk")
    everyone = gather_with_grad(z)                                     # (kN, T', D), rank order
    rank = dist.get_rank() if everyone.shape[0] != n else 0
    own = torch.arange(n, device=z.device) + rank * n                  # this process's rows among everyone's
    other = torch.ones(n, everyone.shape[0], dtype=torch.bool, device=z.device)
    other[torch.arange(n, device=z.device), own] = False
    if ids is not None:
        other &= ids[:, None] != gather_with_grad(ids)[None, :]        # a track is not its own negative
    losses = []
    for k in range(1, steps + 1):
        p = preds[:, :frames - k, k - 1]                               # (N, T'-k, D): predictions of z_{t+k}
        in_track = torch.einsum("ntd,nsd->nts", p, z)                  # (N, T'-k, T'): every step of the track
        across = torch.einsum("ntd,mtd->ntm", p, everyone[:, k:])      # (N, T'-k, kN): step t+k of every track
        across = across.masked_fill(~other[:, None, :], float("-inf"))
        logits = torch.cat([in_track, across], dim=-1)                 # the positive is in_track's column t+k
        target = torch.arange(k, frames, device=z.device).expand(n, -1)
        losses.append(F.cross_entropy(logits.flatten(0, 1), target.flatten()))
    return torch.stack(losses).mean()


class CPC(Objective):
    """The model is a FrameModel (ssl_min/models/samplecnn.py): x (N, 1, T) -> z (N, D, T'). The
    context network and the predictors are this objective's, trained with the encoder and, under
    torchrun, DDP-wrapped like it (BYOL's predictor is handled the same way)."""

    def __init__(self, dim: int, context: int = 256, steps: int = 12):
        super().__init__()
        self.own("heads", ContextPredictor(dim, context, steps))    # trained; DDP-wrapped as self.run

    def forward(self, model, x, ids=None, groups=1):
        z = model(x).transpose(1, 2)                             # (N, T', D)
        _, preds = self.run(z)                                   # the heads
        with torch.autocast(device_type=x.device.type, enabled=False):
            return cpc_loss(z.float(), preds.float(), ids)

"""NT-Xent (SimCLR's normalized temperature-scaled cross entropy), the loss CLMR trains with.

For a batch of N pairs (z1[i], z2[i]) there are 2N embeddings. Each one is an anchor: its
positive is the other view of the same clip, its negatives are the other 2N - 2 embeddings.
With cosine similarity s(a, b) and temperature tau, the loss of anchor a with positive p is

    l(a) = -log( exp(s(a, p) / tau) / sum_{b != a} exp(s(a, b) / tau) )

and NT-Xent is the mean of l over all 2N anchors: a 2N-way cross entropy with the diagonal masked.

Across processes (torchrun/DDP) the negatives come from every process: each process gathers all
embeddings with `gather_with_grad` (ssl_min/objectives/base.py), keeps its own 2N rows as anchors,
and scores them against all 2kN candidates. The loss it returns is the
mean over its own anchors; the mean of that over processes is the batch-kN loss, and with DDP's
gradient averaging the parameter gradients are exactly those of one process with batch kN, as long
as every process computes the same network: true without BatchNorm, or with its statistics over the
global batch (--sync_bn, ssl_min/runtime/sync_bn.py); with per-process statistics (CLMR's way, the
default) each process normalises by its own batch, and the two differ by that.
"""
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from ssl_min.objectives.base import Objective, gather_with_grad


class NTXent(nn.Module):
    """NT-Xent loss. forward(z1, z2) with z1, z2: (N, D) -> scalar; N is read from the tensors."""

    def __init__(self, temperature: float = 0.5):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, ids: torch.Tensor = None) -> torch.Tensor:
        """ids: (N,) optional track index of each pair. Two pairs of the same track (a short folder,
        a long track drawn twice) are not each other's negatives: those logits are masked."""
        if z1.shape != z2.shape or z1.dim() != 2:
            raise ValueError(f"z1 and z2 must both be (N, D), got {tuple(z1.shape)}, {tuple(z2.shape)}")
        # Under bf16/fp16 autocast, exp(s / 0.1) and the log-sum-exp need float32.
        with torch.autocast(device_type=z1.device.type, enabled=False):
            z1 = F.normalize(z1.float(), dim=1)
            z2 = F.normalize(z2.float(), dim=1)
            n = z1.shape[0]
            all1, all2 = gather_with_grad(z1), gather_with_grad(z2)   # (kN, D) each
            world_n = all1.shape[0]
            rank = dist.get_rank() if world_n != n else 0
            candidates = torch.cat([all1, all2], dim=0)               # (2kN, D)
            anchors = torch.cat([z1, z2], dim=0)                      # (2N, D), this process's rows
            logits = anchors @ candidates.T / self.temperature        # (2N, 2kN)
            # Where each anchor sits among the candidates, and where its positive sits.
            i = torch.arange(n, device=z1.device) + rank * n
            self_idx = torch.cat([i, i + world_n])
            pos_idx = torch.cat([i + world_n, i])
            rows = torch.arange(2 * n, device=z1.device)
            logits[rows, self_idx] = float("-inf")                    # an anchor is not its own negative
            if ids is not None:
                all_ids = gather_with_grad(ids)                           # (kN,), no gradient flows
                same = ids.repeat(2)[:, None] == all_ids.repeat(2)[None, :]   # (2N, 2kN)
                same[rows, pos_idx] = False                               # the positive stays
                logits = logits.masked_fill(same, float("-inf"))
            return F.cross_entropy(logits, pos_idx)


class SimCLR(Objective):
    """CLMR's objective: NT-Xent over the 2N projections of the batch (every process's)."""

    def __init__(self, temperature: float = 0.5):
        super().__init__()
        self.ntxent = NTXent(temperature)

    def forward(self, model, x, ids=None, groups=1):
        return self.ntxent(*model(x, groups=groups).chunk(2), ids=ids)

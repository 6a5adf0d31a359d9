"""MoCo v2 (He et al. 2020; Chen et al. 2020): contrast against a queue of past keys.

SimCLR's negatives are the other clips of the batch, so their number is tied to the batch size:
small on a CPU, or with raw audio's long inputs on a GPU. MoCo decouples the two. A key encoder,
a momentum copy of the online network (ssl_min/objectives/momentum.py), embeds each clip's other view; the
last `queue_size` keys wait in a queue and serve as negatives for the next batches:

    q = normalize(online(view a)),  k = normalize(key_encoder(view b))     (no gradient to k)
    l = -log( exp(q.k / tau) / (exp(q.k / tau) + sum_{n in queue} exp(q.n / tau)) )

Here symmetrised, as in MoCo's CIFAR demo and MoCo v3: loss = (l(q1, k2) + l(q2, k1)) / 2, and all
2N keys of the step are enqueued (the oldest dropped). Queue entries of the query's own track
are masked, as in our NT-Xent (a small folder repeats tracks). Under torchrun every process
enqueues the keys of every process (gathered), so all hold the same queue.
Departures: no shuffle-BN (MoCo's cross-GPU BatchNorm shuffle); the key encoder runs in train mode
with BatchNorm statistics of its own batch, which holds both views of every clip (our "joint").
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ssl_min.objectives.base import Objective, gather_with_grad
from ssl_min.objectives.momentum import ema_update, momentum_copy


class MoCo(Objective):
    def __init__(self, model: nn.Module, dim: int, queue_size: int = 4096, momentum: float = 0.99,
                 temperature: float = 0.2):
        super().__init__()
        if queue_size < 1 or temperature <= 0:
            raise ValueError(f"need queue_size >= 1 and temperature > 0; got {queue_size}, {temperature}")
        self.key_encoder = momentum_copy(model, momentum)
        self.momentum, self.temperature = momentum, temperature
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, dim), dim=1))   # (K, D)
        self.register_buffer("queue_ids", torch.full((queue_size,), -1, dtype=torch.long))  # -1: no track
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))                   # next row to write

    def contrast(self, q, k, ids, queue, queue_ids):
        """q, k: (N, D) unit rows; queue (K, D) -> mean InfoNCE loss with the positive in column 0."""
        pos = (q * k).sum(1, keepdim=True)                                      # (N, 1)
        neg = q @ queue.T                                                       # (N, K)
        if ids is not None:
            neg = neg.masked_fill(ids[:, None] == queue_ids[None, :], float("-inf"))
        logits = torch.cat([pos, neg], dim=1) / self.temperature
        return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))

    @torch.no_grad()
    def enqueue(self, keys, ids):
        """keys (M, D), ids (M,) -> written at ptr, wrapping around; ptr advances by M. With M > K
        only the newest K keys are kept, where writing all M in order would have left them."""
        K, M = self.queue.shape[0], len(keys)
        start = self.ptr + max(0, M - K)
        keys, ids = keys[-K:], ids[-K:]
        rows = (start + torch.arange(len(keys), device=keys.device)) % K
        self.queue[rows] = keys
        self.queue_ids[rows] = ids
        self.ptr.copy_((self.ptr + M) % K)

    def forward(self, model, x, ids=None, groups=1):
        q = model(x, groups=groups)                                             # (2N, D)
        with torch.no_grad():
            k = self.key_encoder(x, groups=groups)
        with torch.autocast(device_type=x.device.type, enabled=False):
            q, k = F.normalize(q.float(), dim=1), F.normalize(k.float(), dim=1)
            q1, q2 = q.chunk(2)
            k1, k2 = k.chunk(2)
            queue, queue_ids = self.queue.clone(), self.queue_ids.clone()       # this step's negatives
            loss = (self.contrast(q1, k2, ids, queue, queue_ids) + self.contrast(q2, k1, ids, queue, queue_ids)) / 2
            with torch.no_grad():
                n_ids = ids if ids is not None else torch.full((len(q1),), -1, dtype=torch.long, device=q.device)
                self.enqueue(gather_with_grad(k), gather_with_grad(torch.cat([n_ids, n_ids])))
        return loss

    def after_step(self, online, progress):
        ema_update(self.key_encoder, online, self.momentum)

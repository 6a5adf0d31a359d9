"""`--sync_bn`: BatchNorm statistics over the global batch of every process, as SimCLR trained.

With k processes (torchrun) each BatchNorm normally normalises by its own process's statistics
(CLMR's way). NT-Xent gathers every process's embeddings, so the loss is the batch-kN loss, but the
network computing those embeddings is then k networks that differ in their statistics: DDP's
averaged gradients equal one process with the whole batch only when the model has no BatchNorm.
Synchronised BatchNorm removes the difference: each channel's mean and variance are taken over all
kN clips (and every time step),

    mean = sum_p S1_p / N,    var = sum_p S2_p / N,    S1_p = sum of x,  S2_p = sum of (x - mean)^2

with the sums all-reduced by an autograd-aware all_reduce (its backward all-reduces the gradients),
so every process's loss reaches every process's activations, and DDP's averaged gradients are those
of one process with the whole batch (tests/test_sync_bn.py). The running statistics move by the
global ones (unbiased variance), the same on every process.

    convert(model, device_type) -> model with every nn.BatchNorm1d synchronised, same state-dict keys:
        CUDA: torch's nn.SyncBatchNorm;  CPU (gloo): GlobalBatchNorm1d below, which torch lacks there.
Only CLMR's module stack runs synchronised (`--conv reference`): the fast formulation folds the
stem's statistics into its product, and those sums are not synchronised.
"""
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.nn.functional import all_reduce


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """nn.BatchNorm1d whose training statistics are summed over every process of the default group.
    x: (B, C) or (B, C, T). Outside training, or with one process, it is nn.BatchNorm1d."""

    def forward(self, x):
        if not self.training or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0] + list(range(2, x.dim()))                                   # all but the channel
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        count = torch.tensor([xf.numel() / xf.shape[1]], dtype=xf.dtype, device=xf.device)
        sums = all_reduce(torch.cat([xf.sum(dims), count]))                    # (C + 1,): sum of x, N
        n = sums[-1]
        mean = sums[:-1] / n
        var = all_reduce((xf - mean.view(shape)).square().sum(dims)) / n        # biased, as BatchNorm normalises
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - f).add_(f * mean.detach().to(self.running_mean.dtype))
                unbiased = var.detach() * n / (n - 1).clamp(min=1)
                self.running_var.mul_(1 - f).add_(f * unbiased.to(self.running_var.dtype))
        y = (xf - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert(model: nn.Module, device_type: str) -> nn.Module:
    """Every nn.BatchNorm1d of `model` replaced by a synchronised one with the same parameters and
    buffers (so checkpoints keep their keys) -> the model."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in list(model.named_children()):
        if type(child) is nn.BatchNorm1d:
            like = next(iter(child.state_dict().values()), torch.empty(0))   # its device and float dtype
            synced = GlobalBatchNorm1d(child.num_features, child.eps, child.momentum, child.affine,
                                       child.track_running_stats).to(like.device, like.dtype)
            synced.load_state_dict(child.state_dict())
            synced.train(child.training)
            setattr(model, name, synced)
        else:
            convert(child, device_type)
    return model

"""What an objective is, and how a batch's embeddings cross processes with their gradients.

    objective(model, x, ids, groups) -> loss        x (2N, 1, T): view 1 of N clips, then view 2
    gather_with_grad(z)                             (N, D) on each of k processes -> (kN, D)

Across processes (torchrun/DDP) the negatives must come from *every* process, otherwise k GPUs
with batch N each optimise k separate batch-N losses instead of one batch-kN loss (the bug in
Spijkervet/SimCLR #13, #37). `gather_with_grad` is an all_gather whose backward returns to each
process the gradient of every process's loss by its own rows (ssl_min/objectives/simclr.py: why
that makes DDP's averaged gradients those of one process with the whole batch).
"""
import torch
import torch.distributed as dist
import torch.nn as nn


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sends every process's gradient back to the tensor's owner."""

    @staticmethod
    def forward(ctx, x):
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out, dim=0)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # every process's loss touches every row
        n = grad.shape[0] // dist.get_world_size()
        rank = dist.get_rank()
        return grad[rank * n:(rank + 1) * n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """(N, D) on each of k processes -> (kN, D), rank order; identity when not distributed.
    Every process must hold the same N (DistributedSampler pads so that they do)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


class Objective(nn.Module):
    """What train.py calls a learning objective: `objective(model, x, ids, groups) -> loss`, where x
    (2N, 1, T) holds view 1 of N clips then view 2, ids (N,) their tracks, and `model` the online
    network (DDP-wrapped under torchrun). Objectives with their own state (a queue, a target
    network, a predictor) keep it in this module, so its state_dict is the checkpoint's.

    own(name, module):     makes `module` the objective's trainable part (BYOL's predictor, CPC's
                           heads): a submodule named `name` (so its checkpoint keys are name.*),
                           and `self.run`, the callable that runs it
    trainable():           its parameters, for the optimizer (none if nothing is owned)
    distribute(wrap):      `self.run` becomes wrap(module) for DDP (wrap = lambda m: DDP(m, ...)); the
                           wrapper is kept outside the submodules, so the state dict holds the weights once
    after_step(online, progress): called after each optimizer step, progress = step / total steps
    generator:             what an objective that draws (the masked one's spans) draws from; train.py
                           sets its augmentation stream, saved in the checkpoint, so a resume is exact
    """
    _owned = None
    generator = None

    def own(self, name: str, module: nn.Module):
        setattr(self, name, module)
        object.__setattr__(self, "_owned", module)
        object.__setattr__(self, "run", module)

    def trainable(self):
        return [] if self._owned is None else list(self._owned.parameters())

    def distribute(self, wrap):
        if self._owned is not None:
            object.__setattr__(self, "run", wrap(self._owned))

    def after_step(self, online, progress):
        pass

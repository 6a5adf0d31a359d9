"""Composition: apply an effect to a random subset of a batch, run effects in order.

    RandomApply([effect], p)   each example, with probability p, goes through the effect
    Compose([...])             effects one after the other; the input is never written to
    ComposeMany, RandomResizedCrop: torchaudio-augmentations' other two names
"""
import torch
import torch.nn as nn

from ssl_min.augment.base import Augmentation, randint, uniform


class RandomApply(Augmentation):
    """Applies `transforms` (a module or a list, run in order) to each example with probability p.
    in_place=True writes the chosen examples back into x itself (Compose does that once x is a
    tensor of its own) instead of into a copy: one pass over the batch fewer per effect."""

    def __init__(self, transforms, p=0.5):
        super().__init__()
        self.transforms = Compose(transforms if isinstance(transforms, (list, tuple)) else [transforms])
        self.p = p

    def transform(self, x, generator=None, in_place=False):
        mask = uniform(0, 1, x.shape[0], x.device, generator) < self.p
        chosen = mask.nonzero().squeeze(1)
        if chosen.numel() == 0:
            return x
        only = self.transforms.transforms[0] if len(self.transforms.transforms) == 1 else None
        if getattr(only, "factor", None) is not None:  # a fixed factor (polarity): multiply by it or by 1
            f = torch.where(mask, only.factor, 1.0).to(x.dtype)[:, None, None]
            return x.mul_(f) if in_place else x * f
        out = x if in_place else x.clone()
        out[chosen] = self.transforms.transform_rows(x, chosen, generator)
        return out


class Compose(Augmentation):
    """Runs transforms one after the other. The input is never written to: the first RandomApply
    that applies anything copies the batch, and the ones after it write into that copy."""

    def __init__(self, transforms):
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def transform_rows(self, x, rows, generator=None):
        if len(self.transforms) == 1:          # RandomApply([effect]): the effect reads its rows itself
            return self.transforms[0].transform_rows(x, rows, generator)
        return super().transform_rows(x, rows, generator)

    def transform(self, x, generator=None):
        owned = False               # is x a copy that a RandomApply of this call made?
        for t in self.transforms:
            if isinstance(t, RandomApply):
                y = t.transform(x, generator, in_place=owned)
                owned = owned or y is not x
            else:                   # another transform's output might be a view of its input
                y, owned = t.transform(x, generator), False
            x = y
        return x


class ComposeMany(Compose):
    """num_augmented_samples independent passes of the chain, stacked on a new first dim:
    (C, T) -> (n, C, T), (B, C, T) -> (n, B, C, T)."""

    def __init__(self, transforms, num_augmented_samples):
        super().__init__(transforms)
        self.num_augmented_samples = num_augmented_samples

    def forward(self, x, generator=None):
        return torch.stack([super(ComposeMany, self).forward(x, generator)
                            for _ in range(self.num_augmented_samples)])


class RandomResizedCrop(Augmentation):
    """A random window of n_samples per example (the only transform that changes the length)."""

    def __init__(self, n_samples):
        super().__init__()
        self.n_samples = n_samples

    def transform(self, x, generator=None):
        B, C, T = x.shape
        if T < self.n_samples:
            raise ValueError(f"RandomResizedCrop({self.n_samples}) got only {T} samples")
        start = randint(0, T - self.n_samples, B, x.device, generator)
        idx = start[:, None] + torch.arange(self.n_samples, device=x.device)[None]
        return x.gather(-1, idx[:, None].expand(B, C, self.n_samples))

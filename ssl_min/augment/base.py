"""The augmentation protocol: every effect first samples its parameters, then applies them.

    effect.sample(n, device, generator) -> params        all the randomness, one draw per example
    effect.apply(x, params)             -> y             no randomness: x (B, C, T) -> y (B, C, T)

`forward` accepts (T,), (C, T) or (B, C, T) in float32, float64 or bfloat16 and returns the same
shape and dtype; on a batch every example draws its own parameters (a (C, T) input is one example:
its channels share them). One source of randomness: torch's global generator, or the `generator=`
passed to forward, on the generator's device, so a chain seeded once draws the same numbers on
every run. Composition (RandomApply, Compose) is in ssl_min/augment/compose.py.
"""
import torch
import torch.nn as nn


def draw_device(generator, device):
    """Where to draw: a generator draws on its own device; the global RNG on the batch's."""
    return generator.device if generator is not None else device


def uniform(lo, hi, n, device, generator):
    """n draws from U[lo, hi] (lo == hi gives lo), float64, on `device`."""
    u = torch.rand(n, generator=generator, device=draw_device(generator, device),
                   dtype=torch.float64).to(device)
    return lo + (hi - lo) * u


def randint(lo, hi, n, device, generator):
    """n integers from lo..hi inclusive, int64, on `device`."""
    return torch.randint(lo, hi + 1, (n,), generator=generator,
                         device=draw_device(generator, device)).to(device)


def rows_into(x, rows, out):
    """out[:] = x[rows] (or x when rows is None) in one copy: on the CPU index_select writes into
    the view itself (a gather, then a copy into place, took ~3.5x longer)."""
    if rows is None:
        out.copy_(x)
    elif x.device.type == "cpu":
        torch.index_select(x, 0, rows, out=out)
    else:
        out.copy_(x.index_select(0, rows))


class Augmentation(nn.Module):
    """Base: subclasses define sample(n, device, generator) -> params and apply(x, params).
    `transform(x, generator)` works on (B, C, T) in a float compute dtype; `forward` adds the
    shape and dtype handling, so chains convert only once."""

    def sample(self, n, device, generator):
        return {}

    def apply(self, x, params):
        raise NotImplementedError

    def transform(self, x, generator=None):
        return self.apply(x, self.sample(x.shape[0], x.device, generator))

    def transform_rows(self, x, rows, generator=None):
        """transform(x[rows]), rows: (n,) indices. Effects that copy their input into a buffer of
        their own (the filters, Delay) override it to read the rows straight into that buffer."""
        return self.transform(x.index_select(0, rows), generator)

    def forward(self, x, generator=None):
        if x.dim() not in (1, 2, 3):
            raise ValueError(f"expected (T,), (C, T) or (B, C, T), got {tuple(x.shape)}")
        shape, dtype = x.shape, x.dtype
        x3 = x.reshape((1,) * (3 - x.dim()) + tuple(shape))                # (B, C, T)
        compute = torch.float64 if dtype == torch.float64 else torch.float32
        y = self.transform(x3.to(compute), generator).to(dtype)
        return y.reshape(y.shape[:-1][3 - x.dim():] + y.shape[-1:]) if x.dim() < 3 else y

"""Sharing an effect's costly settings across the examples of a batch.

Some effects cost little to apply but much to set up, once per example: a filter's kernel
spectrum (a kernel built and transformed), a reverb's wet transfer function (16 damped combs
evaluated at every frequency bin). With `reuse` r > 1 an effect draws ceil(B / r) settings per call
instead of B, computes each one's response once, and deals them out over the B examples in a
random order, each setting to floor(B / m) or ceil(B / m) of them (m settings):

    x: (B, C, T) -> sample(m) -> response(params, T, dtype): (m, ...) -> rows[deal]: (B, ...)
                 -> apply_response(x, rows) -> (B, C, T)

Each example's setting is still a draw from the effect's distribution (a uniformly dealt one of m
independent draws); what changes is that about r examples of a call share it, so a batch holds m
different filters or rooms rather than B. Nothing is kept between calls: the output depends on the
generator's state only, as before. r = 1 (the default) is CLMR's chain: every example draws its own.
The effects: sample(n, device, generator) -> params, response(params, T, dtype) -> (n, ...) tensor,
apply_response(x, responses, rows=None) -> x's shape (the sinc filters in filters.py, Reverb in reverb.py);
the mixin gives them apply(x, params) = apply_response(x, response(params, ...)).
"""
import math

import torch


class SharedSettings:
    """Mixin for an Augmentation with `reuse` (int >= 1) and the three methods above."""
    reuse = 1

    def responses(self, B, T, dtype, device, generator):
        """-> (B, ...) one response per example: B draws (reuse 1), or m = ceil(B / reuse) dealt out."""
        if self.reuse <= 1:
            return self.response(self.sample(B, device, generator), T, dtype)
        m = math.ceil(B / self.reuse)
        responses = self.response(self.sample(m, device, generator), T, dtype)                  # (m, ...)
        where = generator.device if generator is not None else device
        deal = torch.randperm(B, generator=generator, device=where).to(device) % m            # (B,)
        return responses.index_select(0, deal)

    def apply(self, x, params):
        return self.apply_response(x, self.response(params, x.shape[-1], x.dtype))

    def transform(self, x, generator=None):
        return self.apply_response(x, self.responses(x.shape[0], x.shape[-1], x.dtype, x.device, generator))

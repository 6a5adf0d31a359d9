"""Point-wise effects of CLMR's chain (and a time mask): polarity, noise, gain, delay.

Each takes x (B, C, T) and returns (B, C, T); parameters are drawn per example (ssl_min/augment/base.py).
"""
import torch

from ssl_min.augment.base import Augmentation, draw_device, randint, rows_into, uniform


class PolarityInversion(Augmentation):
    """x -> -x. `factor`: RandomApply multiplies the batch by -1 or 1 per example, one pass
    instead of copying the chosen examples out and back."""
    factor = -1.0

    def apply(self, x, params):
        return -x


class Noise(Augmentation):
    """Adds white Gaussian noise with std = U(min_snr, max_snr) * std(x), per example.
    (As in the original, 'snr' is a noise-to-signal amplitude ratio, not dB.)"""

    def __init__(self, min_snr=0.0001, max_snr=0.01):
        super().__init__()
        self.min_snr, self.max_snr = min_snr, max_snr

    def sample(self, n, device, generator):
        return {"ratio": uniform(self.min_snr, self.max_snr, n, device, generator)}

    def transform(self, x, generator=None):
        params = self.sample(x.shape[0], x.device, generator)
        params["noise"] = torch.randn(x.shape, generator=generator, device=draw_device(generator, x.device),
                                      dtype=x.dtype).to(x.device)
        return self.apply(x, params)

    def apply(self, x, params):
        std = x.flatten(1).std(dim=1)                                     # (B,)
        scale = (params["ratio"] * std).to(x.dtype)[:, None, None]
        return x + scale * params["noise"]


class Gain(Augmentation):
    """Multiplies by U(min_gain, max_gain) dB, then clips to [-1, 1] as torchaudio's Vol did."""

    def __init__(self, min_gain=-20.0, max_gain=-1.0):
        super().__init__()
        self.min_gain, self.max_gain = min_gain, max_gain

    def sample(self, n, device, generator):
        return {"gain_db": uniform(self.min_gain, self.max_gain, n, device, generator)}

    def apply(self, x, params):
        g = torch.pow(10.0, params["gain_db"] / 20).to(x.dtype)[:, None, None]
        return (x * g).clamp(-1.0, 1.0)


class Delay(Augmentation):
    """out = (x + volume_factor * x delayed by d ms) / 2, d from min_delay..max_delay in steps of
    delay_interval (inclusive), the delay in samples int(d * sample_rate / 1000)."""

    def __init__(self, sample_rate, volume_factor=0.5, min_delay=200, max_delay=500, delay_interval=50):
        super().__init__()
        self.sample_rate, self.volume_factor = sample_rate, volume_factor
        self.min_delay, self.max_delay, self.delay_interval = min_delay, max_delay, delay_interval

    def sample(self, n, device, generator):
        steps = int((self.max_delay - self.min_delay) // self.delay_interval)
        ms = self.min_delay + self.delay_interval * randint(0, steps, n, device, generator)
        return {"offset": (ms * self.sample_rate / 1000).long()}            # int(), like the original

    def apply(self, x, params, rows=None):
        """x: (B, C, T), or with rows (n,) its rows only (params for n examples)."""
        C, T = x.shape[1:]
        B = x.shape[0] if rows is None else rows.shape[0]
        offset = params["offset"].clamp(max=T)
        M = int(offset.max()) if B else 0
        # every row after M zeros, end to end in one flat buffer; row r's delayed copy is the window
        # of T samples that starts M - offset samples into its padded row: one whole-row copy each
        # (index_select on a view of all windows; advanced indexing on (B, C, M + 1, T) ran ~2x slower)
        padded = x.new_zeros(B, C, M + T)
        rows_into(x, rows, padded[..., M:])
        starts = torch.arange(B * C, device=x.device) * (M + T) + (M - offset).repeat_interleave(C)
        delayed = padded.view(-1).unfold(0, T, 1).index_select(0, starts).view(B, C, T)   # x shifted right
        return delayed.mul_(self.volume_factor).add_(padded[..., M:]).mul_(0.5)   # (x + v * delayed) / 2

    def transform_rows(self, x, rows, generator=None):
        return self.apply(x, self.sample(rows.shape[0], x.device, generator), rows)


class TimeMask(Augmentation):
    """Zeroes one segment per example: its length floor(U(0, max_fraction) * T) samples, its start
    uniform over the places it fits (SpecAugment's time mask, on the waveform; not in CLMR's chain)."""

    def __init__(self, max_fraction=0.5):
        super().__init__()
        if not 0 <= max_fraction <= 1:
            raise ValueError(f"max_fraction must lie in [0, 1], got {max_fraction}")
        self.max_fraction = max_fraction

    def sample(self, n, device, generator):
        return {"fraction": uniform(0, self.max_fraction, n, device, generator),
                "start": uniform(0, 1, n, device, generator)}                 # of the places it fits

    def apply(self, x, params):
        T = x.shape[-1]
        length = (params["fraction"] * T).long()                                 # (B,)
        start = (params["start"] * (T - length + 1)).long().clamp(max=T - length)
        t = torch.arange(T, device=x.device)[None]                               # (1, T)
        keep = (t < start[:, None]) | (t >= (start + length)[:, None])           # (B, T)
        return x * keep[:, None].to(x.dtype)

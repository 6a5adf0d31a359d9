"""Windowed-sinc low-, high- and band-switching filters, applied by FFT convolution, batched.

    x (B, C, T) -> each example filtered by its own kernel (or a shared one: reuse > 1)

Kernels as julius builds them (Hann window, 8 zero crossings each side), which
torchaudio-augmentations used; the FFT length is the smallest fast size (2^a 3^b) that holds the
clip and the kernel, so the convolution costs two FFTs per batch whatever the cutoff.
"""
import math

import torch

from ssl_min.augment.base import Augmentation, rows_into, uniform
from ssl_min.augment.shared import SharedSettings


def fft_length(n):
    """The smallest 2^a * 3^b >= n with a >= 5 (or the power of 2 when n <= 32): a length the FFT
    libraries run fast. Odd lengths and powers of 3 run several times slower than their neighbours,
    and a power of 2 can be ~1.9x too long (CLMR's 59049 samples: 62208, not 65536)."""
    best = 1 << max(0, math.ceil(math.log2(n)))
    three = 1
    while three * 32 < best:
        two = 32
        while two * three < n:
            two *= 2
        best, three = min(best, two * three), three * 3
    return best


def _fft_conv_same(x, spectrum, half, rows=None):
    """Centred FIR filtering with edge-replicated padding (as julius does). x: (B, C, T), or its
    rows (n,) only; spectrum: (B or n, n_fft // 2 + 1) complex, each example's kernel (K <= 2 half
    + 1 taps, centred at sample `half`) zero-padded to n_fft = fft_length(T + 2 half) and
    transformed -> (B or n, C, T)."""
    C, T = x.shape[1:]
    n = fft_length(T + 2 * half)
    # The input, edge-replicated by `half` on the left and up to the FFT length on the right, in
    # one copy: a kept output m (2h <= m < 2h + T) reads samples m - 2h .. m only, so nothing
    # past 2h + T is read and the circular wrap reaches only the first 2h outputs (not kept).
    xp = x.new_empty(spectrum.shape[0], C, n)
    rows_into(x, rows, xp[..., half:half + T])
    xp[..., :half] = xp[..., half:half + 1]
    xp[..., half + T:] = xp[..., half + T - 1:half + T]
    # the product in place: no new buffer, ~7 % off this convolution
    y = torch.fft.irfft(torch.fft.rfft(xp).mul_(spectrum[:, None]), n)
    return y[..., 2 * half:2 * half + T]                                   # the 'valid' part


class _SincFilter(SharedSettings, Augmentation):
    """Windowed-sinc FIR (Hann window, `zeros` zero crossings each side, as julius' filters that
    the original used); the low-pass kernel is normalised to unit gain at DC and a high-pass is
    its spectral inverse, delta - lowpass. Cutoff drawn per example, applied by FFT convolution.
    Every kernel is centred in the length of the longest one its cutoff ranges can draw (zeros
    beyond its own), so each example's spectrum can be computed apart from the batch's.
    reuse > 1: kernels shared by examples (ssl_min/augment/shared.py)."""
    zeros = 8

    def __init__(self, sample_rate, reuse=1):
        super().__init__()
        self.sample_rate, self.reuse = sample_rate, reuse

    def lowest_cutoff(self):
        raise NotImplementedError

    def halves(self, cutoff_hz):
        """cutoff_hz: (B,) float64 -> (B,) each kernel's half length, zeros / (2 cutoff / rate)."""
        return (self.zeros / (cutoff_hz / self.sample_rate) / 2).long()

    def longest_half(self):
        """halves() of the lowest cutoff, in Python's float64: the same operations, no tensor."""
        return int(self.zeros / (float(self.lowest_cutoff()) / self.sample_rate) / 2)

    def kernels(self, cutoff_hz, highpass):
        """cutoff_hz: (B,) float64, highpass: (B,) bool -> (B, 2H + 1) kernels, H = longest_half()."""
        c = cutoff_hz / self.sample_rate                                   # cycles per sample
        half = self.halves(cutoff_hz)                                      # (B,) half lengths
        H = self.longest_half()
        if len(half) and int(half.max()) > H:
            raise ValueError(f"a cutoff below the filter's range (lowest {self.lowest_cutoff()} Hz)")
        t = torch.arange(-H, H + 1, device=c.device, dtype=torch.float64)[None]   # (1, K)
        hb = half[:, None].double()
        window = torch.where(t.abs() <= hb, 0.5 + 0.5 * torch.cos(math.pi * t / hb), 0.0)
        # 2c sinc(2ct) = sin(2 pi c t) / (pi t), 2c at t = 0 (torch.sinc ran ~4x slower than sin)
        lowpass = torch.where(t == 0, 2 * c[:, None], torch.sin(2 * math.pi * c[:, None] * t) / (math.pi * t)) * window
        lowpass = lowpass / lowpass.sum(dim=1, keepdim=True)
        delta = (t == 0).double()
        return torch.where(highpass[:, None], delta - lowpass, lowpass)

    def response(self, params, T, dtype):
        """-> (B, n // 2 + 1) complex: the kernels' spectra for inputs of T samples."""
        n = fft_length(T + 2 * self.longest_half())
        return torch.fft.rfft(self.kernels(params["cutoff"], params["highpass"]).to(dtype), n)

    def apply_response(self, x, spectrum, rows=None):
        return _fft_conv_same(x, spectrum, self.longest_half(), rows)

    def transform_rows(self, x, rows, generator=None):
        return self.apply_response(x, self.responses(rows.shape[0], x.shape[-1], x.dtype, x.device, generator), rows)


class LowPassFilter(_SincFilter):
    def __init__(self, sample_rate, freq_low=2200, freq_high=4000, reuse=1):
        super().__init__(sample_rate, reuse)
        self.freq_low, self.freq_high = freq_low, freq_high

    def lowest_cutoff(self):
        return self.freq_low

    def sample(self, n, device, generator):
        return {"cutoff": uniform(self.freq_low, self.freq_high, n, device, generator),
                "highpass": torch.zeros(n, dtype=torch.bool, device=device)}


class HighPassFilter(LowPassFilter):
    def __init__(self, sample_rate, freq_low=200, freq_high=1200, reuse=1):
        super().__init__(sample_rate, freq_low, freq_high, reuse)

    def sample(self, n, device, generator):
        return {**super().sample(n, device, generator),
                "highpass": torch.ones(n, dtype=torch.bool, device=device)}


class HighLowPass(_SincFilter):
    """Per example, a fair coin: a low-pass with cutoff in [lowpass_freq_low, lowpass_freq_high]
    or a high-pass with cutoff in [highpass_freq_low, highpass_freq_high]."""

    def __init__(self, sample_rate, lowpass_freq_low=2200, lowpass_freq_high=4000,
                 highpass_freq_low=200, highpass_freq_high=1200, reuse=1):
        super().__init__(sample_rate, reuse)
        self.lp = (lowpass_freq_low, lowpass_freq_high)
        self.hp = (highpass_freq_low, highpass_freq_high)

    def lowest_cutoff(self):
        return min(self.lp[0], self.hp[0])

    def sample(self, n, device, generator):
        highpass = uniform(0, 1, n, device, generator) < 0.5
        lp = uniform(*self.lp, n, device, generator)
        hp = uniform(*self.hp, n, device, generator)
        return {"cutoff": torch.where(highpass, hp, lp), "highpass": highpass}

"""sox's `reverb` (Freeverb: 8 damped combs + 4 allpasses per channel) as a transfer function
evaluated by FFT, batched with every example's own room.

    x (B, C, T) -> x + wet(x), the wet signal computed in the frequency domain (two FFTs a batch)

Given float64 audio it equals a sample-loop transcription of sox's algorithm to ~1e-9, and sox
itself within 1e-6 of full scale (tests); float32 (training) is computed in float32
(docs/augmentations.md).
"""
import functools
import math

import torch

from ssl_min.augment.base import Augmentation, uniform
from ssl_min.augment.filters import fft_length
from ssl_min.augment.shared import SharedSettings

# Freeverb's delay lengths in samples at 44100 Hz, and sox's stereo spread.
COMB_LENGTHS = (1116, 1188, 1277, 1356, 1422, 1491, 1557, 1617)
ALLPASS_LENGTHS = (225, 341, 441, 556)
STEREO_ADJUST = 12


def sox_reverb_settings(reverberance, hf_damping, room_scale):
    """sox's mapping from its three percentages (tensors, 0..100) to filter settings:
    comb feedback 0.3..0.98 (reverberance), damping 0.2..0.5 (HF-damping), length scale 0.1..1."""
    a = -1 / math.log(1 - 0.3)
    b = 100 / (math.log(1 - 0.98) * a + 1)
    feedback = 1 - torch.exp((reverberance - b) / (a * b))
    damping = hf_damping / 100 * 0.3 + 0.2
    scale = room_scale / 100 * 0.9 + 0.1
    return feedback, damping, scale


def _unit_circle(n_fft, device, cplx):
    """exp(2j pi m / n_fft) for m = 0..n_fft-1, exact phases (computed in float64)."""
    angle = 2 * math.pi * torch.arange(n_fft, device=device, dtype=torch.float64) / n_fft
    return torch.polar(torch.ones_like(angle), angle).to(cplx)


class _Grid:
    """The bins k = 0..n_fft/2, laid out as k = S*a + b (an (A, S) grid, S a power of 2 ~ sqrt(K)),
    and z^n at z = exp(2j pi k / n_fft) / radius for integer delays n as an outer product of two
    small exact-phase table lookups, (.., A, 1) x (.., 1, S), rather than one lookup per bin."""

    def __init__(self, n_fft, radius, device, real):
        self.n_fft, self.radius, self.real = n_fft, radius, real
        self.K = n_fft // 2 + 1
        S = 1 << math.ceil(math.log2(math.sqrt(self.K)))
        self.coarse = S * torch.arange(-(-self.K // S), device=device)             # (A,) the S*a
        self.fine = torch.arange(S, device=device)                                  # (S,) the b
        self.unit = _unit_circle(n_fft, device, torch.complex128 if real == torch.float64 else torch.complex64)
        self.big = torch.finfo(real).max ** 0.4   # radius^-n past this only when n >> n_fft: the comb is ~0 then

    def z_pow(self, n):
        """n: integer tensor (...) -> the two factors of z^n, (..., A, 1) and (..., 1, S)."""
        lead = self.at((self.coarse * n[..., None]) % self.n_fft) * (self.radius ** -n.to(self.real)).clamp(max=self.big)[..., None]
        return lead[..., :, None], self.at((self.fine * n[..., None]) % self.n_fft)[..., None, :]

    @functools.cached_property
    def z_inv(self):
        """z^-1 on the grid, (A, S)."""
        return self.at(-(self.coarse[:, None] + self.fine[None]) % self.n_fft) * self.radius

    def at(self, m):
        """exp(2j pi m / n_fft) for an integer tensor m (...) -> (...) complex: whole-table
        index_select (advanced indexing ran ~5x slower on the CPU)."""
        return self.unit.index_select(0, m.reshape(-1)).view(m.shape)


@functools.lru_cache(maxsize=16)
def _grid(n_fft, radius, device, real):
    """One _Grid per setting, built once (its tables cost ~0.3 ms a call otherwise)."""
    return _Grid(n_fft, radius, device, real)


CACHE_ELEMENTS = 1 << 19      # complex numbers per block of combs on the CPU (4 MB in complex64)


@functools.lru_cache(maxsize=16)
def _allpass_chains(sample_rate, n_fft, radius, device, real):
    """The 4 allpasses of each channel (stereo offsets 0, 1) times the wet gain 0.015 and the 1/2 of
    the mono downmix: the same for every example (fixed lengths), so computed once per setting.
    -> (2, A, S) complex."""
    grid, r, chains = _grid(n_fft, radius, device, real), sample_rate / 44100, []
    for offset in (0, 1):
        chain = 0.015 / 2
        for i, length in enumerate(ALLPASS_LENGTHS):   # the sign of the spread restarts after the 8 combs
            lead, tail = grid.z_pow(torch.tensor(int(r * (length + STEREO_ADJUST * offset * (-1) ** i) + 0.5), device=device))
            zm = 1 / (lead * tail)
            chain = chain * (1.5 * zm - 1) * (1 / (1 - 0.5 * zm))
        chains.append(chain)
    return torch.stack(chains)


def reverb_wet_response(feedback, damping, scale, sample_rate, n_fft, radius):
    """Wet transfer function of sox's filter array (gain 0.015 = wet-gain 0 dB), its two channels
    (stereo offsets 0 and 1) averaged as the mono downmix, sampled at z = exp(2j*pi*k/n_fft) / radius
    for k = 0..n_fft/2. Inputs (B,), float32 or float64 (the precision it is computed in)
    -> (B, n_fft//2+1) complex. n_fft: even.

    comb:    y = z^-N (1 - d z^-1) / (1 - d z^-1 - g (1 - d) z^-N) = 1 / (z^N - G)
             with G = g (1 - d) / (1 - d z^-1), the low-passed loop gain, shared by the 16 combs
    allpass: y = (1.5 z^-M - 1) / (1 - 0.5 z^-M)                     (sox's out = buf - in)

    Cost: the 16 combs are the work, one reciprocal each per (example, bin); the 8 combs of a
    channel go as one (b, 8, A, S) block of b examples, three passes over it (z^N - G in one
    addcmul, the reciprocal in place, the sum over combs), and each channel's allpasses (the same
    for every example, cached) multiply its sum into the block's wet response while it is still
    in cache.
    """
    grid = _grid(n_fft, radius, feedback.device, feedback.dtype)
    one = torch.ones((), dtype=grid.unit.dtype, device=feedback.device)
    minus_G = torch.addcmul(one, damping[:, None, None], grid.z_inv, value=-1).reciprocal_()   # 1 / (1 - d z^-1)
    minus_G.mul_(-(feedback * (1 - damping))[:, None, None])                                  # (B, A, S)
    allpass = _allpass_chains(sample_rate, n_fft, radius, feedback.device, feedback.dtype)
    signs = torch.tensor([(-1) ** i for i in range(len(COMB_LENGTHS))], device=feedback.device)
    base = torch.tensor(COMB_LENGTHS, device=feedback.device)
    scaled = scale[:, None] * (sample_rate / 44100)                            # (B, 1)
    # on the CPU a few examples at a time, so that the (b, 8, A, S) block stays in cache (~1.5x)
    B, per_example = minus_G.shape[0], len(COMB_LENGTHS) * minus_G[0].numel()
    step = B if minus_G.is_cuda else max(1, CACHE_ELEMENTS // per_example)
    powers = [grid.z_pow((scaled * (base + STEREO_ADJUST * offset * signs).to(scale.dtype) + 0.5).long())
              for offset in (0, 1)]                          # per channel: (B, 8, A, 1), (B, 8, 1, S)
    wet = torch.empty_like(minus_G)                                            # (B, A, S)
    for i in range(0, B, step):
        j = slice(i, i + step)
        for offset, (lead, tail) in enumerate(powers):     # a channel's 8 combs, then its allpasses
            combs = torch.addcmul(minus_G[j, None], lead[j], tail[j]).reciprocal_().sum(1)   # (b, A, S)
            if offset == 0:
                torch.mul(combs, allpass[0], out=wet[j])
            else:
                wet[j].addcmul_(combs, allpass[1])
    return wet.reshape(wet.shape[0], -1)[:, :grid.K]


class Reverb(SharedSettings, Augmentation):
    """sox `reverb <reverberance> <hf_damping> <room_scale>` on mono audio, as the original ran it
    (wet-gain 0 dB, no pre-delay, stereo-depth 100 -> two wet channels, downmixed to mono):
        y = x + (wet_0 + wet_1) / 2.
    Each channel of a multi-channel input is reverberated the same way. Parameters are drawn
    uniformly per example.

    sox's feedback reaches 0.98 (RT60 of seconds), longer than the FFT: the response is
    exponentially weighted (z -> z / radius) so that the FFT's circular wrap is attenuated by
    radius^n_fft, then unweighted, which multiplies the rounding error by up to 1 / radius^n_fft.
    WRAP sets radius^n_fft per precision, about sqrt(eps) so both errors stay small: float64 input
    is sox's algorithm to ~1e-9 (tests); float32 input (training) is computed in float32, ~3x
    faster, its wet signal within 2e-4 RMS (2e-3 at worst) of the float64 one."""
    WRAP = {torch.float64: 1e-8, torch.float32: 3e-4}

    def __init__(self, sample_rate, reverberance_min=0, reverberance_max=100, dumping_factor_min=0,
                 dumping_factor_max=100, room_size_min=0, room_size_max=100, reuse=1):
        super().__init__()
        self.sample_rate, self.reuse = sample_rate, reuse
        self.ranges = ((reverberance_min, reverberance_max), (dumping_factor_min, dumping_factor_max),
                       (room_size_min, room_size_max))

    def sample(self, n, device, generator):
        rev, damp, room = (uniform(lo, hi, n, device, generator) for lo, hi in self.ranges)
        return {"reverberance": rev, "hf_damping": damp, "room_scale": room}

    def fft_size(self, T, dtype):
        """-> (n_fft, radius) for inputs of T samples in `dtype` (radius^n_fft = WRAP[dtype])."""
        n_fft = fft_length(T)
        return n_fft, self.WRAP[dtype] ** (1 / n_fft)

    def response(self, params, T, dtype):
        """-> (B, n_fft // 2 + 1) complex: the wet transfer functions for inputs of T samples."""
        settings = sox_reverb_settings(params["reverberance"], params["hf_damping"], params["room_scale"])
        return reverb_wet_response(*[s.to(dtype) for s in settings], self.sample_rate, *self.fft_size(T, dtype))

    def apply_response(self, x, wet):
        T = x.shape[-1]
        n_fft, radius = self.fft_size(T, x.dtype)
        weight = radius ** torch.arange(T, device=x.device, dtype=x.dtype)   # (T,)
        xw = x.new_empty(*x.shape[:-1], n_fft)                             # x * weight, zero-padded
        torch.mul(x, weight, out=xw[..., :T])
        xw[..., T:] = 0
        wet_signal = torch.fft.irfft(torch.fft.rfft(xw).mul_(wet[:, None]), n_fft)[..., :T]
        return torch.addcdiv(x, wet_signal, weight)                        # x + wet / weight

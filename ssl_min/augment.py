"""Audio effects for contrastive positive pairs: torchaudio-augmentations' names, batched and seeded.

Drop-in for the chain that CLMR and the DL101 tutorial build with torchaudio-augmentations 0.2.4
(same class names, same constructor arguments, same meanings), but:
  * batched: input (T,), (C, T) or (B, C, T); on a batch every example draws its own parameters
    and its own RandomApply coin (a (C, T) input is one example: its channels share them), unless
    the filters and the reverb are asked to share settings (reuse > 1, ssl_min/shared_settings.py);
  * on any device, the batch's own; float32/float64/bfloat16 in, same dtype out;
  * one source of randomness: torch's global generator, or the `generator=` passed to forward;
  * every transform first `sample`s its parameters, then `apply`s them with no more randomness.

Reverb reproduces sox's `reverb` effect (Freeverb: 8 damped combs + 4 allpasses), which is what
the original called, in the frequency domain, so a batch costs two FFTs instead of a sample loop.
"""
import functools
import math

import torch
import torch.nn as nn

from ssl_min.shared_settings import SharedSettings


# ---------------------------------------------------------------- helpers

def _draw_device(generator, device):
    """Where to draw: a generator draws on its own device; the global RNG on the batch's."""
    return generator.device if generator is not None else device


def _uniform(lo, hi, n, device, generator):
    """n draws from U[lo, hi] (lo == hi gives lo), float64, on `device`."""
    u = torch.rand(n, generator=generator, device=_draw_device(generator, device),
                   dtype=torch.float64).to(device)
    return lo + (hi - lo) * u


def _randint(lo, hi, n, device, generator):
    """n integers from lo..hi inclusive, int64, on `device`."""
    return torch.randint(lo, hi + 1, (n,), generator=generator,
                         device=_draw_device(generator, device)).to(device)


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


def _rows_into(x, rows, out):
    """out[:] = x[rows] (or x when rows is None) in one copy: on the CPU index_select writes into
    the view itself (a gather, then a copy into place, took ~3.5x longer)."""
    if rows is None:
        out.copy_(x)
    elif x.device.type == "cpu":
        torch.index_select(x, 0, rows, out=out)
    else:
        out.copy_(x.index_select(0, rows))


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
    _rows_into(x, rows, xp[..., half:half + T])
    xp[..., :half] = xp[..., half:half + 1]
    xp[..., half + T:] = xp[..., half + T - 1:half + T]
    # the product in place: no new buffer, ~7 % off this convolution
    y = torch.fft.irfft(torch.fft.rfft(xp).mul_(spectrum[:, None]), n)
    return y[..., 2 * half:2 * half + T]                                   # the 'valid' part


def _istft(frames, window, hop):
    """torch.istft(frames.transpose(1, 2), n_fft, hop, window, center=True, length=hop * (n - 1))
    for frames (M, n, n_fft // 2 + 1) stored frame by frame, with n_fft a multiple of hop: each
    inverse FFT is windowed while it is added into place, then divided by the windows' summed
    squares. -> (M, hop * (n - 1))."""
    M, n = frames.shape[:2]
    n_fft = window.shape[0]
    R = n_fft // hop                                                      # frames overlapping a sample
    pieces = torch.fft.irfft(frames, n_fft).view(M, n, R, hop)
    out = torch.zeros(M, n + R - 1, hop, dtype=pieces.dtype, device=pieces.device)
    envelope = torch.zeros(n + R - 1, hop, dtype=window.dtype, device=window.device)
    for q, w in enumerate(window.view(R, hop)):                           # the q-th hop of every frame
        out[:, q:q + n].addcmul_(pieces[:, :, q], w)
        envelope[q:q + n] += w * w
    keep = slice(n_fft // 2, n_fft // 2 + hop * (n - 1))
    return out.view(M, -1)[:, keep] / envelope.view(-1)[keep]


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


# ---------------------------------------------------------------- point-wise effects

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
        return {"ratio": _uniform(self.min_snr, self.max_snr, n, device, generator)}

    def transform(self, x, generator=None):
        params = self.sample(x.shape[0], x.device, generator)
        params["noise"] = torch.randn(x.shape, generator=generator, device=_draw_device(generator, x.device),
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
        return {"gain_db": _uniform(self.min_gain, self.max_gain, n, device, generator)}

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
        ms = self.min_delay + self.delay_interval * _randint(0, steps, n, device, generator)
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
        _rows_into(x, rows, padded[..., M:])
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
        return {"fraction": _uniform(0, self.max_fraction, n, device, generator),
                "start": _uniform(0, 1, n, device, generator)}                 # of the places it fits

    def apply(self, x, params):
        T = x.shape[-1]
        length = (params["fraction"] * T).long()                                 # (B,)
        start = (params["start"] * (T - length + 1)).long().clamp(max=T - length)
        t = torch.arange(T, device=x.device)[None]                               # (1, T)
        keep = (t < start[:, None]) | (t >= (start + length)[:, None])           # (B, T)
        return x * keep[:, None].to(x.dtype)


# ---------------------------------------------------------------- filters

class _SincFilter(SharedSettings, Augmentation):
    """Windowed-sinc FIR (Hann window, `zeros` zero crossings each side, as julius' filters that
    the original used); the low-pass kernel is normalised to unit gain at DC and a high-pass is
    its spectral inverse, delta - lowpass. Cutoff drawn per example, applied by FFT convolution.
    Every kernel is centred in the length of the longest one its cutoff ranges can draw (zeros
    beyond its own), so each example's spectrum can be computed apart from the batch's.
    reuse > 1: kernels shared by examples (ssl_min/shared_settings.py)."""
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
        return {"cutoff": _uniform(self.freq_low, self.freq_high, n, device, generator),
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
        highpass = _uniform(0, 1, n, device, generator) < 0.5
        lp = _uniform(*self.lp, n, device, generator)
        hp = _uniform(*self.hp, n, device, generator)
        return {"cutoff": torch.where(highpass, hp, lp), "highpass": highpass}


# ---------------------------------------------------------------- pitch shift (CLMR's chain)

class PitchShift(Augmentation):
    """Per example, shift the pitch by s semitones drawn from [pitch_shift_min, pitch_shift_max],
    keeping the length (torchaudio-augmentations' name and arguments; CLMR applies it with p=0.6).

    Method, batched with a different shift per example: with r = 2^(s/12), (1) a phase vocoder
    stretches time by r, pitch kept: output frame k reads the STFT at fractional input frame k/r
    (magnitudes interpolated linearly, phases advanced by each bin's measured instantaneous
    frequency); (2) reading the stretched signal r times faster (linear interpolation) restores the
    length and multiplies every frequency by r. Departures from sox's `pitch`, which the original
    ran per example on the CPU: sox stretches with WSOLA (time-domain overlap-add) and resamples
    with a band-limited filter; here a phase vocoder (window ~93 ms, hop a quarter) smears
    transients a little, and the linear-interpolation read has no anti-aliasing filter (a shift up
    folds a little energy above the Nyquist frequency back down)."""

    def __init__(self, n_samples, sample_rate, pitch_shift_min=-7.0, pitch_shift_max=7.0):
        super().__init__()
        self.n_samples, self.sample_rate = n_samples, sample_rate
        self.pitch_shift_min, self.pitch_shift_max = pitch_shift_min, pitch_shift_max
        self.n_fft = max(256, 1 << round(math.log2(0.093 * sample_rate)))
        self.hop = self.n_fft // 4

    def sample(self, n, device, generator):
        return {"semitones": _uniform(self.pitch_shift_min, self.pitch_shift_max, n, device, generator)}

    def frames_out(self, r, T):
        """Output frames the stretch needs for ratios r (B,): every frame that overlaps a sample
        the read in (2) takes, up to (T - 1) * r + 1 (and one sample of slack for rounding)."""
        return ((((T - 1) * r.double() + 2 + self.n_fft // 2) / self.hop).floor() + 1).long()

    def apply(self, x, params):
        B, C, T = x.shape
        r = (2.0 ** (params["semitones"] / 12)).to(x.dtype)                   # (B,) frequency ratio
        window = torch.hann_window(self.n_fft, device=x.device, dtype=x.dtype)
        X = torch.stft(x.reshape(B * C, T), self.n_fft, self.hop, window=window, return_complex=True)
        F, N = X.shape[-2:]
        X = X.transpose(1, 2)                             # (B*C, N, F): frames as rows (stft's memory order)
        # (1) phase vocoder: output frame k <- input frame k / r, per example; as many output
        # frames as the example with the largest r needs (each example's output is its own: the
        # frames past its need never reach the samples it reads)
        n_out = int(self.frames_out(r, T).max())
        pos = (torch.arange(n_out, device=x.device, dtype=x.dtype)[None] / r[:, None]).clamp(max=N - 1)
        i0 = pos.floor().long()
        i1 = (i0 + 1).clamp(max=N - 1)
        frac = (pos - i0).repeat_interleave(C, 0)[..., None]                  # (B*C, n_out, 1)

        # One table of rows per example: the advances (N+1 rows, the last two "no advance"), then
        # the frames' unit phasors X / |X| (N rows).
        table = torch.ones(B * C, 2 * N + 1, F, dtype=X.dtype, device=x.device)
        mag = X.abs()
        unit = table[:, N + 1:]                                                # X / |X|, (B*C, N, F)
        torch.where(mag > torch.finfo(x.dtype).tiny, torch.sgn(X), X.new_ones(()), out=unit)   # silent: phase 0

        def frames(t, i):
            """Rows i (B, n) of each example's frames t (B*C, M, F) -> (B*C, n, F), whole rows copied."""
            rows = torch.arange(B * C, device=x.device)[:, None] * t.shape[1] + i.repeat_interleave(C, 0)
            return t.reshape(-1, F).index_select(0, rows.flatten()).reshape(B * C, -1, F)

        mag = torch.lerp(frames(mag, i0), frames(mag, i1), frac)
        # Phases accumulate from an anchor frame whose window lies inside the audio: the first
        # n_fft / (2 hop) frames see the edge padding, and their advances would otherwise be summed
        # about r times (not once), leaving a different phase offset in each bin and cancelling
        # neighbouring bins of one partial. Before the anchor, frames keep their input phase.
        # The advance from input frame j to j + 1 is the phasor unit[j+1] * conj(unit[j]) (the
        # 2 pi wraps of the textbook's angle arithmetic vanish in the exponential), so the phase of
        # output frame k is a running product: no atan2, cos or sin.
        k = torch.arange(n_out, device=x.device)
        anchor = torch.ceil(self.n_fft // (2 * self.hop) * r.double()).long().clamp(max=n_out - 1)   # (B,)
        torch.mul(unit[:, 1:], unit[:, :-1].conj(), out=table[:, :N - 1])
        # output frame k: before the anchor "no advance" (row N); at it, the anchor's phasor; after
        # it, the advance of output frame k-1 (input frame i0[k-1])
        taken = torch.where(k[None] > anchor[:, None], i0.roll(1, -1), N)     # (B, n_out)
        taken = torch.where(k[None] == anchor[:, None], N + 1 + i0, taken)
        phasor = frames(table, taken)
        for j in range(1, n_out):              # the running product, frame by frame (all bins at once)
            phasor[:, j] *= phasor[:, j - 1]
        head = int(anchor.max())                                               # frames before the anchor
        before = (k[:head] < anchor[:, None]).repeat_interleave(C, 0)[..., None]   # (B*C, head, 1)
        phasor[:, :head] = torch.where(before, frames(unit, i0[:, :head]), phasor[:, :head])
        torch.view_as_real(phasor).mul_(mag[..., None])                       # the spectrum, in place
        stretched = _istft(phasor, window, self.hop).reshape(B, C, -1)
        # (2) read r times faster: sample m of the output is sample m * r of the stretched signal
        t = torch.arange(T, device=x.device, dtype=x.dtype)[None] * r[:, None]   # (B, T)
        j0 = t.floor().long().clamp(max=stretched.shape[-1] - 1)
        j1 = (j0 + 1).clamp(max=stretched.shape[-1] - 1)
        take = lambda j: stretched.gather(-1, j[:, None].expand(B, C, T))     # noqa: E731
        return torch.lerp(take(j0), take(j1), (t - j0)[:, None])


# ---------------------------------------------------------------- reverb (sox's algorithm)

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
        rev, damp, room = (_uniform(lo, hi, n, device, generator) for lo, hi in self.ranges)
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


# ---------------------------------------------------------------- composition

class RandomApply(Augmentation):
    """Applies `transforms` (a module or a list, run in order) to each example with probability p.
    in_place=True writes the chosen examples back into x itself (Compose does that once x is a
    tensor of its own) instead of into a copy: one pass over the batch fewer per effect."""

    def __init__(self, transforms, p=0.5):
        super().__init__()
        self.transforms = Compose(transforms if isinstance(transforms, (list, tuple)) else [transforms])
        self.p = p

    def transform(self, x, generator=None, in_place=False):
        mask = _uniform(0, 1, x.shape[0], x.device, generator) < self.p
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
        start = _randint(0, T - self.n_samples, B, x.device, generator)
        idx = start[:, None] + torch.arange(self.n_samples, device=x.device)[None]
        return x.gather(-1, idx[:, None].expand(B, C, self.n_samples))


def build_chain(sample_rate, p_polarity=0.8, p_noise=0.01, min_snr=0.0001, max_snr=0.01, p_gain=0.3,
                p_filter=0.8, p_delay=0.3, p_reverb=0.6, lowpass=(2200, 4000), highpass=(200, 1200),
                p_pitch=0.0, n_samples=0, p_time_mask=0.0, time_mask_max=0.5, effect_reuse=1):
    """The CLMR / DL101 chain in CLMR's order (CLMR's probabilities by default; CLMR's pitch shift,
    p=0.6, comes with p_pitch > 0). lowpass / highpass: cutoff ranges in Hz (torchaudio-augmentations'
    defaults). A time mask (not CLMR's) comes last, and only with p_time_mask > 0: without it the
    chain draws exactly CLMR's random numbers. effect_reuse > 1: the filter's kernels and the
    reverb's rooms are shared by about that many examples each (ssl_min/shared_settings.py)."""
    if not (isinstance(effect_reuse, int) and effect_reuse >= 1):
        raise ValueError(f"effect_reuse must be an integer >= 1, got {effect_reuse!r}")
    mask = [RandomApply([TimeMask(time_mask_max)], p=p_time_mask)] if p_time_mask > 0 else []
    return Compose([
        RandomApply([PolarityInversion()], p=p_polarity),
        RandomApply([Noise(min_snr=min_snr, max_snr=max_snr)], p=p_noise),
        RandomApply([Gain()], p=p_gain),
        RandomApply([HighLowPass(sample_rate, *lowpass, *highpass, reuse=effect_reuse)], p=p_filter),
        RandomApply([Delay(sample_rate=sample_rate)], p=p_delay),
        RandomApply([PitchShift(n_samples, sample_rate)], p=p_pitch),
        RandomApply([Reverb(sample_rate=sample_rate, reuse=effect_reuse)], p=p_reverb),
    ] + mask)


def chain_for(cfg):
    """The chain a train.py config (ssl_min/config.py) asks for: its rate, effect probabilities,
    noise and cutoff ranges, and chunk length. train.py and bench/train.py build it here, so a
    new effect's fields are passed in one place."""
    return build_chain(cfg.sample_rate, cfg.p_polarity, cfg.p_noise, cfg.min_snr, cfg.max_snr, cfg.p_gain,
                       cfg.p_filter, cfg.p_delay, cfg.p_reverb, (cfg.lowpass_min, cfg.lowpass_max),
                       (cfg.highpass_min, cfg.highpass_max), cfg.p_pitch, cfg.chunk_samples,
                       cfg.p_time_mask, cfg.time_mask_max, cfg.effect_reuse)

"""Pitch shift by a phase vocoder, batched with a shift per example (CLMR's chain, p = 0.6).

    x (B, C, T) -> (B, C, T), each example shifted by its own s semitones, length kept
"""
import math

import torch

from ssl_min.augment.base import Augmentation, uniform


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
        return {"semitones": uniform(self.pitch_shift_min, self.pitch_shift_max, n, device, generator)}

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

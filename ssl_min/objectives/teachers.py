"""The masked objective's teachers: what each encoder frame should be predicted as, from the audio.

    Teachers(sample_rate, hop)(x (B, 1, T)) -> features (B, T', M + 12), spectrum (B, T', S)
      window    an n_fft-sample Hann window centred on each encoder frame (frame t covers samples
                [t hop, (t + 1) hop), so its window is centred at t hop + hop / 2), T' = T // hop
      features  log-mel (M = 40 bands, the HTK scale, as torchaudio's MelSpectrogram) and chroma
                (12 pitch classes, each frame scaled to a maximum of 1): the acoustic teacher,
                turned into tokens by k-means (HuBERT's first iteration, MERT-v0)
      spectrum  log power in semitone-spaced bands, a CQT-like spectrum: the musical teacher,
                reconstructed (MERT's CQT target)
    tokens(features) -> (B, T') int64: the nearest of K centroids, after standardising
    standard_spectrum(spectrum) -> the spectrum standardised per band

The log-frequency bands are triangles one semitone wide on each side, centred on equal-tempered
notes (A4 = 440 Hz), laid over the FFT's bins. n_fft is the power of two nearest 0.1 s, so the
bins are about 10 Hz apart; the lowest band is the lowest note whose two semitones span 1.5 bins
(near 100 Hz at 8 kHz), since below that a "semitone band" would be one bin shared by several
notes. Chroma sums the bands' power per pitch class (C = 0, ..., B = 11).

The centroids and the standardising statistics are fitted once on the unlabeled pool
(ssl_min/data/codebook.py) and kept as buffers, so they travel in the checkpoint with the
objective's state: a resumed run and every process under DDP use the same ones. The window, mel
and band matrices are derived from the config and not saved. Everything runs on the batch's device
in float32, without gradients.
"""
import math

import torch
import torch.nn as nn
import torchaudio

N_MELS = 40
PITCH_CLASSES = 12


def fft_size(sample_rate: int) -> int:
    """The power of two nearest 0.1 s of samples (1024 at 8 kHz, 2048 at 22.05 kHz)."""
    return 2 ** round(math.log2(sample_rate * 0.1))


def frame_windows(x: torch.Tensor, hop: int, n_fft: int) -> torch.Tensor:
    """x (B, T) -> (B, T // hop, n_fft): the window of frame t is centred at t hop + hop // 2;
    the audio is reflected at both ends where a window reaches past them."""
    frames = x.shape[-1] // hop
    padded = nn.functional.pad(x[:, None], (n_fft // 2, n_fft // 2), mode="reflect")[:, 0]
    return padded[:, hop // 2:].unfold(-1, n_fft, hop)[:, :frames]


def semitone_bands(sample_rate: int, n_fft: int, top: float = 0.45) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (bank (n_fft // 2 + 1, S), midi (S,)): triangular semitone bands over the FFT bins, from
    the lowest note whose bands span 1.5 bins up to `top` x the sample rate."""
    bin_hz = sample_rate / n_fft
    width = 2 ** (1 / 12) - 2 ** (-1 / 12)                 # a band's span, relative to its centre
    low = math.ceil(69 + 12 * math.log2(1.5 * bin_hz / width / 440))
    high = math.floor(69 + 12 * math.log2(top * sample_rate / 440))
    midi = torch.arange(low, high + 1, dtype=torch.float64)
    centres = 440 * 2 ** ((midi - 69) / 12)
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * bin_hz
    semis = 12 * torch.log2(freqs.clamp(min=1e-3)[:, None] / centres[None, :])    # (bins, S)
    bank = (1 - semis.abs()).clamp(min=0)
    return bank.float(), midi.long()


class Teachers(nn.Module):
    """Frame targets from audio. hop: samples per encoder frame; n_tokens: K, the centroids."""

    def __init__(self, sample_rate: int, hop: int, n_tokens: int = 64):
        super().__init__()
        self.hop, self.n_fft = hop, fft_size(sample_rate)
        bins = self.n_fft // 2 + 1
        bank, midi = semitone_bands(sample_rate, self.n_fft)
        chroma = torch.zeros(len(midi), PITCH_CLASSES)
        chroma[torch.arange(len(midi)), midi % PITCH_CLASSES] = 1.0
        mel = torchaudio.functional.melscale_fbanks(bins, 0.0, sample_rate / 2, N_MELS, sample_rate)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.register_buffer("mel", mel, persistent=False)                 # (bins, M)
        self.register_buffer("bands", bank, persistent=False)              # (bins, S)
        self.register_buffer("chroma", chroma, persistent=False)           # (S, 12)
        self.midi = midi
        self.n_features, self.n_bands = N_MELS + PITCH_CLASSES, len(midi)
        # Fitted on the pool (data/codebook.py), saved with the objective.
        self.register_buffer("centroids", torch.zeros(n_tokens, self.n_features))
        self.register_buffer("feature_mean", torch.zeros(self.n_features))
        self.register_buffer("feature_std", torch.ones(self.n_features))
        self.register_buffer("spectrum_mean", torch.zeros(self.n_bands))
        self.register_buffer("spectrum_std", torch.ones(self.n_bands))
        self.register_buffer("fitted", torch.tensor(False))

    def power(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 1, T) or (B, T) -> (B, T', bins) the power spectrum of every frame's window."""
        windows = frame_windows(x.reshape(x.shape[0], -1).float(), self.hop, self.n_fft)
        return torch.fft.rfft(windows * self.window).abs().pow(2)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 1, T) -> (features (B, T', M + 12), spectrum (B, T', S)), both unstandardised."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            power = self.power(x)
            bands = power @ self.bands                                     # (B, T', S)
            chroma = bands @ self.chroma                                   # (B, T', 12)
            chroma = chroma / chroma.amax(dim=-1, keepdim=True).clamp(min=1e-10)
            log_mel = torch.log(power @ self.mel + 1e-6)
            return torch.cat([log_mel, chroma], dim=-1), torch.log(bands + 1e-6)

    def set_codebook(self, centroids, feature_mean, feature_std, spectrum_mean, spectrum_std):
        """Install what data/codebook.py fitted (tensors of the buffers' shapes)."""
        for name, value in (("centroids", centroids), ("feature_mean", feature_mean), ("feature_std", feature_std),
                            ("spectrum_mean", spectrum_mean), ("spectrum_std", spectrum_std)):
            buffer = getattr(self, name)
            if tuple(value.shape) != tuple(buffer.shape):
                raise ValueError(f"codebook {name}: shape {tuple(value.shape)}, expected {tuple(buffer.shape)}")
            buffer.copy_(value)
        self.fitted.fill_(True)

    @torch.no_grad()
    def tokens(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, T', M + 12) -> (B, T') the index of the nearest centroid (Euclidean, in
        standardised units)."""
        f = (features.float() - self.feature_mean) / self.feature_std
        distances = (f.pow(2).sum(-1, keepdim=True) - 2 * f @ self.centroids.T
                     + self.centroids.pow(2).sum(-1))                      # (B, T', K)
        return distances.argmin(dim=-1)

    def standard_spectrum(self, spectrum: torch.Tensor) -> torch.Tensor:
        return (spectrum.float() - self.spectrum_mean) / self.spectrum_std

"""One audio file as the model sees it, read only where it is needed.

    file (any rate, any channels) -> mono (mean of channels) -> resample to `sample_rate` -> float32

* `Track.read(start, n)` reads only the frames it needs (soundfile's start/frames). When the file's
  rate differs from the model's, it reads a little context on both sides and starts on the
  resampler's period, so a chunk equals the same samples of the whole resampled track.
* `check_file(path)` is the check every file passes once (header, length, three decoded windows for
  silence and NaN/Inf); `find_audio(root)` lists a folder's audio files.
* `split_chunks` / `track_chunks`: non-overlapping chunks, as the probe and the exporter read a track.
"""
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif"}
SILENCE = 1e-6          # peak below this (-120 dBFS) in every checked window: a silent file
CHECK_WINDOWS = 3       # decoded windows per file when scanning (start, middle, end)
CHECK_SECONDS = 1.0


@dataclass
class Track:
    """An audio file as the model sees it. `length` is in samples at `sample_rate` (mono)."""
    path: str
    frames: int          # in the file, at file_rate
    file_rate: int
    channels: int
    sample_rate: int     # the model's rate
    stamp: str = None    # the file's "size:mtime" when it was checked (index.py), to notice a change since

    @property
    def ratio(self):
        """(o, n): file rate and model rate divided by their gcd; n model samples = o file frames."""
        g = math.gcd(self.file_rate, self.sample_rate)
        return self.file_rate // g, self.sample_rate // g

    @property
    def length(self):
        o, n = self.ratio
        return -(-self.frames * n // o)  # ceil, as torchaudio's resample

    def decode(self, start=0, frames=-1):
        """File frames [start, start + frames) -> mono float32 (frames,) at the file's rate."""
        x, _ = sf.read(self.path, start=start, frames=frames, dtype="float32", always_2d=True)
        return torch.from_numpy(x.mean(axis=1) if x.shape[1] > 1 else x[:, 0])

    def read(self, start, n):
        """Model-rate samples [start, start + n) -> (n,) float32, zero-padded past the end.
        `start` must be a multiple of self.ratio[1] (the resampler's period)."""
        o, m = self.ratio
        if (o, m) == (1, 1):
            x = self.decode(start, n)
        else:
            if start % m:
                raise ValueError(f"start {start} is not a multiple of the resampling period {m}")
            context = o * math.ceil((_resample_width(o, m) + o) / o)       # file frames, k * o
            src = start // m * o
            lo = max(0, src - context)
            x = self.decode(lo, src - lo + math.ceil(n * o / m) + context)
            x = AF.resample(x, o, m)[(src - lo) // o * m:]
        return torch.nn.functional.pad(x[:n], (0, max(0, n - x.shape[0])))

    def read_all(self):
        """The whole track at the model's rate: (length,) float32."""
        x = self.decode()
        o, m = self.ratio
        return x if (o, m) == (1, 1) else AF.resample(x, o, m)


def _resample_width(o, n, lowpass_filter_width=6, rolloff=0.99):
    """Half-width in file frames of torchaudio's default sinc resampling kernel."""
    return math.ceil(lowpass_filter_width * o / (min(o, n) * rolloff))


def find_audio(root):
    """All audio files under `root`, recursively, sorted. Hidden folders (the cache) are skipped."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def check_file(path):
    """-> (frames, rate, channels) of a usable file, or raises ValueError with the reason."""
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise ValueError(f"unreadable or not audio ({type(e).__name__})") from None
    if info.frames <= 0:
        raise ValueError("zero-length")
    window = min(info.frames, int(CHECK_SECONDS * info.samplerate))
    starts = sorted({0, (info.frames - window) // 2, info.frames - window})[:CHECK_WINDOWS]
    peak = 0.0
    try:
        for s in starts:
            x, _ = sf.read(str(path), start=s, frames=window, dtype="float32", always_2d=True)
            if not np.isfinite(x).all():
                raise ValueError("NaN or Inf samples")
            peak = max(peak, float(np.abs(x).max(initial=0.0)))
    except ValueError:
        raise
    except Exception as e:
        raise ValueError(f"corrupt: decoding failed ({type(e).__name__})") from None
    if peak < SILENCE:
        raise ValueError("silent")
    return info.frames, info.samplerate, info.channels


def split_chunks(x, chunk_samples):
    """Non-overlapping chunks of the last axis (CLMR's evaluation): (..., T) -> (..., n, chunk).
    The tail shorter than a chunk is dropped, unless there is no whole chunk: then one zero-padded."""
    n = max(1, x.shape[-1] // chunk_samples)
    x = torch.nn.functional.pad(x, (0, max(0, n * chunk_samples - x.shape[-1])))
    return x[..., :n * chunk_samples].reshape(*x.shape[:-1], n, chunk_samples)


def track_chunks(track, chunk_samples):
    """All non-overlapping chunks of a track: (n_chunks, 1, chunk)."""
    return split_chunks(track.read_all(), chunk_samples)[:, None]

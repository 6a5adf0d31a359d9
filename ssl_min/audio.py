"""Audio files as the model sees them: find them, check them once, read only the needed frames.

The sample pipeline, the same whether it reads the audio files or the decode-once cache:
    file (any rate, any channels) -> mono (mean of channels) -> resample to `sample_rate` -> float32

* `scan(paths)` checks every file once when the index is built (header, length, a few decoded
  windows for silence and NaN/Inf) and returns the usable tracks plus a `ScanReport` that counts
  and names the rest. The result is cached in `<folder>/.ssl_min_index.json` (keyed by path,
  size and mtime), so a second start-up on 25,000 files reads one JSON file.
* `Track.read(start, n)` reads only the frames it needs (`soundfile`'s start/frames). When the
  file's rate differs from the model's, it reads a little context on both sides and starts on
  the resampler's period, so a chunk equals the same samples of the whole resampled track.
* `CachedTrack` is the same track read from the decode-once cache (`ssl_min.prepare`): a slice.
"""
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from ssl_min.checkpoint import write_text_atomic

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif"}
SILENCE = 1e-6          # peak below this (-120 dBFS) in every checked window: a silent file
CHECK_WINDOWS = 3       # decoded windows per file when scanning (start, middle, end)
CHECK_SECONDS = 1.0


# ---------------------------------------------------------------- one audio file

@dataclass
class Track:
    """An audio file as the model sees it. `length` is in samples at `sample_rate` (mono)."""
    path: str
    frames: int          # in the file, at file_rate
    file_rate: int
    channels: int
    sample_rate: int     # the model's rate

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


# ---------------------------------------------------------------- scanning, with a report

@dataclass
class ScanReport:
    """What scanning found wrong, by reason; printed once, never silent."""
    skipped: dict = field(default_factory=dict)  # reason -> [paths]

    def add(self, reason, path):
        self.skipped.setdefault(reason, []).append(str(path))

    @property
    def n_skipped(self):
        return sum(len(v) for v in self.skipped.values())

    def summary(self, total, first=3):
        if not self.skipped:
            return f"{total} audio files, all usable"
        lines = [f"{total} audio files, {self.n_skipped} skipped:"]
        for reason, paths in sorted(self.skipped.items()):
            more = f" (+{len(paths) - first} more)" if len(paths) > first else ""
            lines.append(f"  {len(paths):6d} {reason}: {', '.join(paths[:first])}{more}")
        return "\n".join(lines)


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


def scan(paths, sample_rate, cache_file=None, verbose=True):
    """Check each path once -> ([Track], ScanReport). With `cache_file`, results (good and bad)
    are remembered by (path, size, mtime) and only new or changed files are decoded."""
    cache = {}
    if cache_file and Path(cache_file).exists():
        try:
            cache = json.loads(Path(cache_file).read_text())
        except (OSError, json.JSONDecodeError):
            cache = {}
    tracks, report, fresh = [], ScanReport(), {}
    for p in paths:
        p = str(p)
        try:
            st = os.stat(p)
        except OSError:
            report.add("missing file", p)
            continue
        key = f"{st.st_size}:{st.st_mtime_ns}"
        entry = cache.get(p)
        if entry is None or entry.get("key") != key:
            try:
                entry = {"key": key, "info": check_file(p)}
            except ValueError as e:
                entry = {"key": key, "error": str(e)}
        fresh[p] = entry
        if "error" in entry:
            report.add(entry["error"], p)
        else:
            tracks.append(Track(p, *entry["info"], sample_rate))
    merged = {**cache, **fresh}      # keep entries of other subsets (e.g. the other splits)
    if cache_file and merged != cache:
        try:
            write_text_atomic(cache_file, json.dumps(merged))
        except OSError as e:
            print(f"note: could not write the index cache {cache_file}: {e}")
    if verbose:
        print(report.summary(len(fresh)))
    return tracks, report


def scan_folder(root, sample_rate, verbose=True):
    """Every audio file under `root`, checked, with the index cached in the folder."""
    paths = find_audio(root)
    if not paths:
        raise FileNotFoundError(f"no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) under {root}")
    return scan(paths, sample_rate, Path(root) / ".ssl_min_index.json", verbose)


# ---------------------------------------------------------------- the decode-once cache

class CachedTrack(Track):
    """A track decoded once into the cache's memmap: the same Track (so the same length and the
    same offset grid as reading the file), but `read` is a slice instead of a decode."""

    def __init__(self, path, frames, file_rate, channels, sample_rate, array, offset, scale):
        super().__init__(path, frames, file_rate, channels, sample_rate)
        self.array, self.offset, self.scale = array, offset, scale

    def read(self, start, n):
        a = self.array[self.offset + start:self.offset + min(start + n, self.length)]
        x = torch.from_numpy(np.asarray(a, dtype=np.float32) * self.scale)
        return torch.nn.functional.pad(x, (0, n - x.shape[0]))

    def read_all(self):
        return self.read(0, self.length)


def load_cache(cache_dir):
    """A folder written by `python -m ssl_min.prepare` -> ([CachedTrack], sample_rate)."""
    meta = json.loads((Path(cache_dir) / "index.json").read_text())
    array = np.load(Path(cache_dir) / "audio.npy", mmap_mode="r")
    scale = 1 / 32767 if array.dtype == np.int16 else 1.0
    tracks = [CachedTrack(t["path"], t["frames"], t["file_rate"], t["channels"], meta["sample_rate"],
                          array, t["offset"], scale) for t in meta["tracks"]]
    return tracks, meta["sample_rate"]


def is_cache(folder):
    """A folder written by `python -m ssl_min.prepare` (or train.py's automatic cache)."""
    return (Path(folder) / "index.json").exists() and (Path(folder) / "audio.npy").exists()


def tracks_from(source, sample_rate, verbose=True):
    """A folder of audio or a cache folder (it has index.json + audio.npy) -> [Track]."""
    if is_cache(source):
        tracks, rate = load_cache(source)
        if rate != sample_rate:
            raise ValueError(f"cache {source} is at {rate} Hz, the model wants {sample_rate} Hz")
        if verbose:
            print(f"{len(tracks)} tracks from the decode-once cache {source}")
        return tracks
    return scan_folder(source, sample_rate, verbose)[0]


def split_chunks(x, chunk_samples):
    """Non-overlapping chunks of the last axis (CLMR's evaluation): (..., T) -> (..., n, chunk).
    The tail shorter than a chunk is dropped, unless there is no whole chunk: then one zero-padded."""
    n = max(1, x.shape[-1] // chunk_samples)
    x = torch.nn.functional.pad(x, (0, max(0, n * chunk_samples - x.shape[-1])))
    return x[..., :n * chunk_samples].reshape(*x.shape[:-1], n, chunk_samples)


def track_chunks(track, chunk_samples):
    """All non-overlapping chunks of a track: (n_chunks, 1, chunk)."""
    return split_chunks(track.read_all(), chunk_samples)[:, None]

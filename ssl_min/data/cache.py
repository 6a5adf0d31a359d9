"""The decode-once cache: every track decoded once, mono, at the model's rate, into one array.

    DST/audio.npy    int16 (or float32) samples of all tracks end to end, read as a memmap
    DST/index.json   per track: path, offset, length; and what the cache was built from

Training then draws a chunk with a slice instead of decoding compressed audio at every step.
`ensure_cache` builds it when missing or stale (a file added, removed or changed: size, mtime) and
reuses it otherwise; `load_cache` reads it back as CachedTracks, the same Tracks (same length, same
offset grid) whose `read` is a slice. Same samples as reading the files (the pipeline is the same:
mono mean, then torchaudio's resample); int16 rounds them to 1/32767, float32 keeps them.
Default place: FOLDER/.ssl_min_cache/<rate>hz (hidden: never scanned as audio).
"""
import hashlib
import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ssl_min.data.audio import Track
from ssl_min.runtime.atomic import atomic_write, write_text_atomic


PCM = {".wav", ".aiff", ".aif"}   # read as fast as a cache when already at the model's rate


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


def _decode(track):
    return track.read_all().numpy()


def source_key(tracks, sample_rate, dtype):
    """What the cache was built from: every file's path, size and mtime, the rate, the dtype."""
    stats = []
    for t in tracks:
        st = os.stat(t.path)
        stats.append((t.path, st.st_size, st.st_mtime_ns))
    return hashlib.sha1(json.dumps([stats, sample_rate, dtype]).encode()).hexdigest()


def _decode_into(path, tracks, offsets, sample_rate, dtype, workers, verbose):
    """Every track decoded into one .npy memmap at `path`, end to end, in `workers` processes."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(int(offsets[-1]),))
    # spawn, not fork: a forked child of a process that already ran torch ops can deadlock.
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    decoded = pool.imap(_decode, tracks, chunksize=1) if pool else map(_decode, tracks)
    # counted in samples (integers: a float sum of hours overshot its total), shown in hours
    bar = tqdm(total=int(offsets[-1]), unit_scale=1 / (sample_rate * 3600), desc="decoding once", disable=not verbose,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.2f}/{total:.2f} h audio [{elapsed}<{remaining}]")
    try:
        for i, x in enumerate(decoded):
            x = x[:tracks[i].length]
            if dtype == "int16":
                x = np.round(np.clip(x, -1, 1) * 32767)
            array[offsets[i]:offsets[i] + len(x)] = x      # a short decode stays zero-padded
            bar.update(int(tracks[i].length))
    finally:
        bar.close()
        if pool:
            pool.close()
    array.flush()
    del array


def write_cache(tracks, dst, sample_rate, dtype="int16", workers=2, source="", skipped=None, verbose=True):
    """Decode `tracks` (model rate, mono) into dst/audio.npy + dst/index.json."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    offsets = np.concatenate([[0], np.cumsum([t.length for t in tracks])])
    atomic_write(dst / "audio.npy", lambda tmp: _decode_into(tmp, tracks, offsets, sample_rate, dtype, workers, verbose))
    index = {"sample_rate": sample_rate, "dtype": dtype, "source": str(source), "skipped": skipped or {},
             "source_key": source_key(tracks, sample_rate, dtype),
             "tracks": [{"path": t.path, "offset": int(o), "length": t.length, "frames": t.frames,
                         "file_rate": t.file_rate, "channels": t.channels}
                        for t, o in zip(tracks, offsets[:-1])]}
    write_text_atomic(dst / "index.json", json.dumps(index, indent=1))
    if verbose:
        size = (dst / "audio.npy").stat().st_size
        print(f"wrote {len(tracks)} tracks, {offsets[-1] / sample_rate / 3600:.2f} h at {sample_rate} Hz "
              f"({dtype}, {size / 2**20:.0f} MiB) to {dst}")


def default_cache_dir(folder, sample_rate):
    """FOLDER/.ssl_min_cache/<rate>hz (hidden: never scanned as audio), or under ~/.cache when the
    folder is read-only."""
    here = Path(folder) / ".ssl_min_cache"
    if os.access(folder, os.W_OK):
        return here / f"{sample_rate}hz"
    digest = hashlib.sha1(str(Path(folder).resolve()).encode()).hexdigest()[:12]
    return Path.home() / ".cache" / "ssl_min" / digest / f"{sample_rate}hz"


def needs_cache(tracks, sample_rate):
    """Compressed files, or files at another rate, cost a decode (and a resample) per chunk."""
    return any(Path(t.path).suffix.lower() not in PCM or t.file_rate != sample_rate for t in tracks)


def ensure_cache(tracks, folder, sample_rate, cache_dir=None, dtype="int16", workers=None, skipped=None):
    """The cache of `tracks` at cache_dir (default: default_cache_dir), built if missing or stale
    (any file added, removed or changed) -> its folder. Says what it did."""
    cache_dir = Path(cache_dir or default_cache_dir(folder, sample_rate))
    index = cache_dir / "index.json"
    if index.exists() and (cache_dir / "audio.npy").exists():
        try:
            if json.loads(index.read_text()).get("source_key") == source_key(tracks, sample_rate, dtype):
                size = (cache_dir / "audio.npy").stat().st_size
                print(f"decode-once cache: reusing {cache_dir} ({size / 2**20:.0f} MiB)")
                return cache_dir
        except (OSError, json.JSONDecodeError):
            pass
        print(f"decode-once cache: {cache_dir} is stale (files changed); rebuilding it")
    else:
        print(f"decode-once cache: decoding {len(tracks)} files once into {cache_dir}")
    write_cache(tracks, cache_dir, sample_rate, dtype, workers or os.cpu_count() or 1, folder, skipped)
    return cache_dir



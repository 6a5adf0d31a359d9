"""The decode-once cache: every track decoded once, mono, at the model's rate, one file per track.

    DST/tracks/<key>.npy   one track's samples, int16 (or float32), read as a memmap; <key> names
                           the file it came from (path, size, mtime), the rate and the dtype
    DST/index.json         the tracks of the last build in order (path, file, length, ...), the
                           files that failed to decode (named, with the reason) and those the scan
                           skipped

A start decodes only what no file of DST/tracks holds yet: a new or changed file gets a new key, a
removed one's file is deleted, everything else is reused. Each track's file is written whole or not
at all (a temporary name, then a rename), so a kill keeps every track decoded before it, and the
next start picks up from there. A file that fails while decoding is named in the log and the index
and left out; the others are kept. Decoding streams in blocks of BLOCK samples (Track.read, which
equals the whole resampled track sample for sample), so a worker's memory stays bounded however long
the file is; the worker count follows the cores and the available memory.

`ensure_cache` builds or reuses; `load_cache` reads it back as CachedTracks: the same Tracks (same
length, same offset grid) whose `read` is a slice of the memmap. Same samples as reading the files:
int16 rounds them to 1/32767, float32 keeps them. Default place FOLDER/.ssl_min_cache/<rate>hz
(hidden: never scanned as audio), or under ~/.cache/ssl_min when the folder is read-only.
"""
import hashlib
import json
import multiprocessing
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ssl_min.data.audio import Track
from ssl_min.data.index import ScanReport, file_stamp
from ssl_min.runtime.atomic import atomic_write, write_text_atomic

PCM = {".wav", ".aiff", ".aif"}   # read as fast as a cache when already at the model's rate
BLOCK = 1 << 20                   # model-rate samples decoded at a time (a worker holds a few times this)
OPEN_MAPS = 64                    # memmaps a process keeps open (a library has more tracks than file handles)
SMALL_JOB = 600                   # seconds of audio below which decoding stays in this process
_maps = OrderedDict()


class CachedTrack(Track):
    """A track decoded once into its own .npy: the same Track, but `read` is a slice of a memmap
    (opened on first use, at most OPEN_MAPS kept open per process)."""

    def __init__(self, path, frames, file_rate, channels, sample_rate, file, scale, offset=0):
        super().__init__(path, frames, file_rate, channels, sample_rate)
        self.file, self.scale, self.offset = str(file), scale, offset

    def samples(self):
        array = _maps.pop(self.file, None)
        if array is None:
            array = np.load(self.file, mmap_mode="r")
            if len(_maps) >= OPEN_MAPS:
                _maps.popitem(last=False)                     # the least recently used
        _maps[self.file] = array
        return array

    def read(self, start, n):
        lo = self.offset + start
        a = self.samples()[lo:self.offset + min(start + n, self.length)]
        x = torch.from_numpy(np.asarray(a, dtype=np.float32) * self.scale)
        return torch.nn.functional.pad(x, (0, n - x.shape[0]))

    def read_all(self):
        return self.read(0, self.length)


def track_key(track, sample_rate, dtype):
    """The file's path, size and mtime, the rate and the dtype -> a name for its decoded samples."""
    return hashlib.sha1(json.dumps([track.path, file_stamp(track.path), sample_rate, dtype]).encode()).hexdigest()[:24]


def is_cache(folder):
    """A folder written by ensure_cache (or `python -m ssl_min.prepare`, or a cache of the single-array
    format of earlier versions: audio.npy)."""
    folder = Path(folder)
    return (folder / "index.json").exists() and ((folder / "tracks").is_dir() or (folder / "audio.npy").exists())


def load_cache(cache_dir):
    """A cache folder -> ([CachedTrack], sample_rate, ScanReport of the files the scan skipped)."""
    cache_dir = Path(cache_dir)
    meta = json.loads((cache_dir / "index.json").read_text())
    legacy = "format" not in meta                             # earlier versions: one array, tracks end to end
    dtype = np.load(cache_dir / "audio.npy", mmap_mode="r").dtype if legacy else np.dtype(meta["dtype"])
    scale = 1 / 32767 if dtype == np.int16 else 1.0

    def where(t):                                             # -> (file, offset in it)
        return (cache_dir / "audio.npy", t["offset"]) if legacy else (cache_dir / "tracks" / t["file"], 0)

    tracks = [CachedTrack(t["path"], t["frames"], t["file_rate"], t["channels"], meta["sample_rate"], where(t)[0],
                          scale, where(t)[1]) for t in meta["tracks"]]
    return tracks, meta["sample_rate"], ScanReport(meta.get("skipped", {}))


def decode_track(job):
    """job: (track, destination, dtype) -> (path, None) once destination holds the whole track, or
    (path, the reason it failed). Streams in blocks; never raises (a pool must outlive a bad file)."""
    track, dst, dtype = job
    block = track.ratio[1] * (BLOCK // track.ratio[1])           # on the resampler's grid

    def write(tmp):                               # plain writes: a memmap's dirty pages would count as memory
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                     "shape": (track.length,)})
            for start in range(0, track.length, block):
                x = track.read(start, min(block, track.length - start)).numpy()
                f.write((np.round(np.clip(x, -1, 1) * 32767) if dtype == "int16" else x).astype(dtype).tobytes())

    try:
        atomic_write(dst, write)
        return track.path, None
    except Exception as e:  # noqa: BLE001 (any decoder error: the file is named and skipped)
        return track.path, f"decoding failed ({type(e).__name__}: {str(e)[:120]})"


def worker_count(requested, n_jobs, seconds):
    """Processes to decode with: requested, else the cores, fewer when the available memory could not
    hold that many workers (~0.5 GB each, torch included), and one (this process, no pool to start)
    for less than SMALL_JOB seconds of audio, where starting workers costs more than it saves."""
    if requested:
        return max(1, min(requested, n_jobs))
    if seconds < SMALL_JOB:
        return 1
    cores = os.cpu_count() or 1
    try:
        available = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemAvailable"))
    except (OSError, StopIteration, ValueError):
        available = 1 << 34
    return max(1, min(cores, n_jobs, available // (512 << 20)))


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


def ensure_cache(tracks, folder, sample_rate, cache_dir=None, dtype="int16", workers=None, skipped=None, verbose=True):
    """The cache of `tracks` at cache_dir (default: default_cache_dir), brought up to date: only
    tracks without a decoded file are decoded, files of tracks no longer there are deleted -> its
    folder. Says what it reused, decoded, dropped and could not decode."""
    say = print if verbose else (lambda *a, **k: None)
    cache_dir = Path(cache_dir or default_cache_dir(folder, sample_rate))
    (cache_dir / "tracks").mkdir(parents=True, exist_ok=True)
    keys = {t.path: track_key(t, sample_rate, dtype) for t in tracks}
    have = {p.stem for p in (cache_dir / "tracks").glob("*.npy")}
    old = json.loads((cache_dir / "index.json").read_text()) if (cache_dir / "index.json").exists() else {}
    known_bad = {p: r for p, r in old.get("failed", {}).items() if old.get("failed_keys", {}).get(p) == keys.get(p)}
    todo = [t for t in tracks if keys[t.path] not in have and t.path not in known_bad]
    failed = dict(known_bad)
    unchanged = old.get("format") == 2 and old.get("skipped") == (skipped or {})   # and the scan's report too
    if not todo and {k for p, k in keys.items() if p not in failed} == have and unchanged:
        say(f"decode-once cache: reusing {cache_dir} ({len(have)} tracks"
            + (f"; {len(failed)} could not be decoded, named in index.json)" if failed else ")"))
        return cache_dir
    if todo:
        samples = sum(t.length for t in todo)
        n = worker_count(workers, len(todo), samples / sample_rate)
        say(f"decode-once cache {cache_dir}: {len(tracks) - len(todo) - len(known_bad)} tracks reused, decoding "
            f"{len(todo)} files once ({n} process(es))")
        jobs = [(t, cache_dir / "tracks" / f"{keys[t.path]}.npy", dtype) for t in todo]
        by_path = {t.path: t for t in todo}
        # spawn, not fork: a forked child of a process that already ran torch ops can deadlock.
        pool = multiprocessing.get_context("spawn").Pool(n) if n > 1 else None
        bar = tqdm(total=samples, unit_scale=1 / (sample_rate * 3600), desc="decoding once",
                   disable=not verbose,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.2f}/{total:.2f} h audio [{elapsed}<{remaining}]")
        try:
            for path, error in (pool.imap_unordered(decode_track, jobs) if pool else map(decode_track, jobs)):
                if error:
                    failed[path] = error
                    say(f"\nskipped {path}: {error}")
                bar.update(by_path[path].length)
        finally:
            bar.close()
            if pool:
                pool.close()
    keep = {keys[t.path] for t in tracks if t.path not in failed}
    dropped = [p for p in (cache_dir / "tracks").glob("*.npy") if p.stem not in keep]
    for p in dropped:                                 # removed or changed files: forget their samples
        p.unlink()
    (cache_dir / "audio.npy").unlink(missing_ok=True)  # the single array of earlier versions, replaced
    good = [t for t in tracks if t.path not in failed]
    index = {"format": 2, "sample_rate": sample_rate, "dtype": dtype, "source": str(folder), "skipped": skipped or {},
             "failed": failed, "failed_keys": {p: keys[p] for p in failed},
             "tracks": [{"path": t.path, "file": f"{keys[t.path]}.npy", "length": t.length, "frames": t.frames,
                         "file_rate": t.file_rate, "channels": t.channels} for t in good]}
    write_text_atomic(cache_dir / "index.json", json.dumps(index, indent=1))
    hours = sum(t.length for t in good) / sample_rate / 3600
    size = sum(p.stat().st_size for p in (cache_dir / "tracks").glob("*.npy"))
    say(f"decode-once cache {cache_dir}: {len(good)} tracks, {hours:.2f} h at {sample_rate} Hz ({dtype}, "
        f"{size / 2**20:.0f} MiB); {len(todo) - (len(failed) - len(known_bad))} decoded now, {len(dropped)} dropped"
        + (f", {len(failed)} could not be decoded (named in index.json)" if failed else ""))
    return cache_dir

"""The decode-once cache: every track decoded once, mono, at the model's rate, one file per track.

    DST/tracks/<key>.npy   one track's samples, int16 (or float32), read as a memmap; <key> names
                           the file it came from (path, size, mtime), the rate and the dtype
    DST/index.json         the tracks of the last build in order (path, file, length, ...), the
                           files that failed to decode (named, with the reason) and those the scan
                           skipped

A start decodes only what no file of DST/tracks holds yet: a new or changed file gets a new key, a
removed one's file is deleted, everything else is reused. Each track's file is written whole or not
at all (a temporary name, then a rename), so a kill keeps every track decoded before it, and the
next start picks up from there. Decoding (decode.py) streams in blocks (Track.read, which
equals the whole resampled track sample for sample), so a worker's memory stays bounded however long
the file is; the worker count follows the cores and the available memory.

What survives what (each case has a test in tests/test_faults.py):
* a file that cannot be decoded: named in the log and the index, left out until it changes;
* a full disk or a file-size limit while writing: the build stops with one line; nothing is marked
  bad, the tracks written are kept, the next start goes on from there;
* out of memory, a worker killed (the OOM killer), a file changed or removed since the scan: that
  track is left out of this start, named, and tried again at the next one (a dead worker's tracks
  are first retried one at a time); the build never waits on a dead worker;
* a key is the file's path, size and mtime *when it was scanned*, and a file is decoded only if it
  still has them, before and after: a file replaced meanwhile is never cached under the old key;
* a cached file cut short (a kill, a disk error) is found by its size and decoded again;
  index.json unreadable: rebuilt from the tracks' files; temporary files of a killed build: deleted
  at the next build; SIGTERM during a build stops it like Ctrl-C (temporary files removed);
* one --cache DIR for two folders: refused in one line (each build would delete the other's tracks);
* two processes (locks.py): builds of one cache take turns; a process reading the cache holds a
  shared lock, and a build never deletes a track's file while any reader holds it (the stale files
  go at a later build).

`ensure_cache` builds or reuses; `load_cache` reads it back as CachedTracks: the same Tracks (same
length, same offset grid) whose `read` is a slice of the memmap. Same samples as reading the files:
int16 rounds them to 1/32767, float32 keeps them. Default place FOLDER/.ssl_min_cache/<rate>hz
(hidden: never scanned as audio), or under ~/.cache/ssl_min when the folder is read-only.
"""
import hashlib
import io
import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ssl_min.data.audio import Track
from ssl_min.data.decode import decode_all, worker_count
from ssl_min.data.index import ScanReport, file_stamp
from ssl_min.data.locks import build_lock, delete_unread, hold_for_reading, stop_on_sigterm
from ssl_min.runtime.atomic import write_text_atomic

PCM = {".wav", ".aiff", ".aif"}   # read as fast as a cache when already at the model's rate
OPEN_MAPS = 64                    # memmaps a process keeps open (a library has more tracks than file handles)
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
    """The file's path, size and mtime (as scanned), the rate and the dtype -> a name for its decoded samples."""
    stamp = track.stamp or file_stamp(track.path)
    return hashlib.sha1(json.dumps([track.path, stamp, sample_rate, dtype]).encode()).hexdigest()[:24]


def npy_bytes(length, dtype):
    """The size of a whole .npy file of `length` samples of `dtype` (header + data): a file of
    another size was cut short."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                  "shape": (length,)})
    return header.tell() + length * np.dtype(dtype).itemsize


def intact(file, length, dtype):
    """Does `file` hold a whole track of `length` samples? (its size: a truncated file is shorter)"""
    try:
        return os.path.getsize(file) == npy_bytes(length, dtype)
    except OSError:
        return False


def is_cache(folder):
    """A folder written by ensure_cache (or `python -m ssl_min.prepare`, or a cache of the single-array
    format of earlier versions: audio.npy)."""
    folder = Path(folder)
    return (folder / "index.json").exists() and ((folder / "tracks").is_dir() or (folder / "audio.npy").exists())


def load_cache(cache_dir):
    """A cache folder -> ([CachedTrack], sample_rate, ScanReport of the files the scan skipped)."""
    cache_dir = Path(cache_dir)
    try:
        meta = json.loads((cache_dir / "index.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SystemExit(f"{cache_dir / 'index.json'} is damaged ({type(e).__name__}): build the cache again from the "
                         "audio folder (its decoded tracks are checked and reused)") from None
    hold_for_reading(cache_dir)
    legacy = "format" not in meta                             # earlier versions: one array, tracks end to end
    dtype = np.load(cache_dir / "audio.npy", mmap_mode="r").dtype if legacy else np.dtype(meta["dtype"])
    scale = 1 / 32767 if dtype == np.int16 else 1.0

    def where(t):                                             # -> (file, offset in it)
        return (cache_dir / "audio.npy", t["offset"]) if legacy else (cache_dir / "tracks" / t["file"], 0)

    tracks = [CachedTrack(t["path"], t["frames"], t["file_rate"], t["channels"], meta["sample_rate"], where(t)[0],
                          scale, where(t)[1]) for t in meta["tracks"]]
    if not legacy:
        for t in tracks:
            if not intact(t.file, t.length, dtype):
                raise SystemExit(f"{t.file} (the cached samples of {t.path}) is damaged (cut short?): build the "
                                 "cache again from the audio folder, which decodes that track again")
    return tracks, meta["sample_rate"], ScanReport(meta.get("skipped", {}))


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
    with build_lock(cache_dir, say), stop_on_sigterm():
        return _build(tracks, folder, sample_rate, cache_dir, dtype, workers, skipped or {}, say)


def read_index(cache_dir, say):
    """index.json as a dict; {} when there is none, or when it is damaged (said: the tracks' files are
    checked one by one and reused, and the index is written again)."""
    path = cache_dir / "index.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        say(f"note: {path} is damaged ({type(e).__name__}): written again from the tracks' files, which are "
            "checked and reused")
        return {}


def _build(tracks, folder, sample_rate, cache_dir, dtype, workers, skipped, say):
    for tmp in (cache_dir / "tracks").glob("*.tmp*"):  # a killed build's half-written files (we hold the lock)
        tmp.unlink(missing_ok=True)
    keys = {t.path: track_key(t, sample_rate, dtype) for t in tracks}
    length = {keys[t.path]: t.length for t in tracks}
    on_disk = {p.stem for p in (cache_dir / "tracks").glob("*.npy")}
    have = {k for k in on_disk if k in length and intact(cache_dir / "tracks" / f"{k}.npy", length[k], dtype)}
    damaged = (on_disk & set(length)) - have
    old = read_index(cache_dir, say)
    other = old.get("source")
    if other and Path(other).is_dir() and Path(other).resolve() != Path(folder).resolve():
        raise SystemExit(f"decode-once cache {cache_dir} holds the tracks of {other}, another folder still there: "
                         f"building it for {folder} would delete them. Give each folder its own --cache DIR")
    known_bad = {p: r for p, r in old.get("failed", {}).items() if old.get("failed_keys", {}).get(p) == keys.get(p)}
    todo = [t for t in tracks if keys[t.path] not in have and t.path not in known_bad]
    failed, later = dict(known_bad), {}
    unchanged = old.get("format") == 2 and old.get("skipped") == skipped   # and the scan's report too
    if not todo and {k for p, k in keys.items() if p not in failed} == on_disk and unchanged:
        say(f"decode-once cache: reusing {cache_dir} ({len(have)} tracks"
            + (f"; {len(failed)} could not be decoded, named in index.json)" if failed else ")"))
        return cache_dir
    if damaged:
        say(f"decode-once cache {cache_dir}: {len(damaged)} cached track(s) cut short (a kill, a disk error?): "
            "decoded again")
    if todo:
        samples = sum(t.length for t in todo)
        n = worker_count(workers, len(todo), samples / sample_rate)
        say(f"decode-once cache {cache_dir}: {len(tracks) - len(todo) - len(known_bad)} tracks reused, decoding "
            f"{len(todo)} files once ({n} process(es))")
        jobs = [(t, cache_dir / "tracks" / f"{keys[t.path]}.npy", dtype) for t in todo]
        bar = tqdm(total=samples, unit_scale=1 / (sample_rate * 3600), desc="decoding once",
                   disable=say is not print,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.2f}/{total:.2f} h audio [{elapsed}<{remaining}]")
        try:
            for (track, _, _), (path, error, kind) in decode_all(jobs, n):
                if kind == "disk":
                    written = sum(1 for t in todo if (cache_dir / "tracks" / f"{keys[t.path]}.npy").exists())
                    raise SystemExit(f"decode-once cache {cache_dir}: {error} on {path}: free some space (or pass "
                                     f"--cache DIR on another disk) and start again; the {written} track(s) decoded "
                                     "are kept and none is marked bad")
                if kind == "bad":
                    failed[path] = error
                elif kind == "again":
                    later[path] = error
                if error:
                    say(f"\nskipped {path}: {error}" + (" (tried again at the next start)" if kind == "again" else ""))
                bar.update(track.length)
        finally:
            bar.close()
    keep = {keys[t.path] for t in tracks if t.path not in failed and t.path not in later}
    stale = [p for p in (cache_dir / "tracks").glob("*.npy") if p.stem not in keep]
    if not delete_unread(cache_dir, stale):   # removed or changed files: forget their samples, unless read now
        say(f"note: {len(stale)} cached file(s) of removed or changed tracks kept: another process reads this "
            "cache now (a later build deletes them)")
        stale = []
    (cache_dir / "audio.npy").unlink(missing_ok=True)  # the single array of earlier versions, replaced
    good = [t for t in tracks if t.path not in failed and t.path not in later]
    index = {"format": 2, "sample_rate": sample_rate, "dtype": dtype, "source": str(folder), "skipped": skipped,
             "failed": failed, "failed_keys": {p: keys[p] for p in failed},
             "tracks": [{"path": t.path, "file": f"{keys[t.path]}.npy", "length": t.length, "frames": t.frames,
                         "file_rate": t.file_rate, "channels": t.channels} for t in good]}
    write_text_atomic(cache_dir / "index.json", json.dumps(index, indent=1))
    hours = sum(t.length for t in good) / sample_rate / 3600
    size = sum(p.stat().st_size for p in (cache_dir / "tracks").glob("*.npy"))
    say(f"decode-once cache {cache_dir}: {len(good)} tracks, {hours:.2f} h at {sample_rate} Hz ({dtype}, "
        f"{size / 2**20:.0f} MiB); {len(todo) - (len(failed) - len(known_bad)) - len(later)} decoded now, "
        f"{len(stale)} dropped"
        + (f", {len(failed)} could not be decoded (named in index.json)" if failed else "")
        + (f", {len(later)} left out of this start (tried again at the next)" if later else ""))
    return cache_dir

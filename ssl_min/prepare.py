"""Decode-once cache: every audio file under SRC decoded once, mono, at the model's rate, into
DST/audio.npy (one int16 or float32 array, all tracks end to end, read as a memmap) plus
DST/index.json (path, offset, length per track). Training then draws random chunks with a slice
instead of decoding compressed audio at every step. train.py does this by itself (`--cache auto`:
a folder of compressed files, or of files at another rate, is decoded on first use into
FOLDER/.ssl_min_cache/<rate>hz and reused while no file changes); by hand:

    python -m ssl_min.prepare ~/music data/music_cache --sample_rate 22050
    python train.py --data data/music_cache ...

Same samples as reading the files directly (the pipeline is the same: mono mean, then torchaudio's
resample); int16 rounds them to 1/32767, float32 keeps them (twice the disk).
"""
import argparse
import hashlib
import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ssl_min.audio import scan_folder
from ssl_min.checkpoint import atomic_write, write_text_atomic
from ssl_min.labeled import split_list


PCM = {".wav", ".aiff", ".aif"}   # read as fast as a cache when already at the model's rate


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


def prepare(src, dst, sample_rate, dtype="int16", workers=2, only=None):
    """only: a split file (see labeled.split_list): keep just the files it lists (paths relative to src)."""
    tracks, report = scan_folder(src, sample_rate)
    if only:
        wanted = split_list(only)
        tracks = [t for t in tracks if str(Path(t.path).relative_to(src)) in wanted]
        print(f"{len(tracks)} of the files are listed in {only}")
    if not tracks:
        raise ValueError(f"no usable audio under {src}")
    write_cache(tracks, dst, sample_rate, dtype, workers, src, report.skipped)


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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="folder of audio files (searched recursively)")
    parser.add_argument("dst", help="cache folder to write (audio.npy + index.json)")
    parser.add_argument("--sample_rate", type=int, default=22050, help="the model's rate (CLMR: 22050)")
    parser.add_argument("--dtype", choices=["int16", "float32"], default="int16",
                        help="int16 halves the disk; float32 keeps samples bit-exact")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="decoding processes")
    parser.add_argument("--only", default=None, help="a split file (e.g. MagnaTagATune's train.npy): cache only the "
                        "files it lists, so pretraining never sees the valid and test clips")
    a = parser.parse_args()
    prepare(a.src, a.dst, a.sample_rate, a.dtype, a.workers, a.only)

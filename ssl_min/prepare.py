"""Decode-once cache: every audio file under SRC decoded once, mono, at the model's rate, into
DST/audio.npy (one int16 or float32 array, all tracks end to end, read as a memmap) plus
DST/index.json (path, offset, length per track). Training then draws random chunks with a slice
instead of decoding compressed audio at every step:

    python -m ssl_min.prepare ~/music data/music_cache --sample-rate 22050
    python train.py --data data/music_cache ...

Same samples as reading the files directly (the pipeline is the same: mono mean, then torchaudio's
resample); int16 rounds them to 1/32767, float32 keeps them (twice the disk).
"""
import argparse
import json
import os
import multiprocessing
from pathlib import Path

import numpy as np

from ssl_min.data import scan_folder


def _decode(track):
    return track.read_all().numpy()


def prepare(src, dst, sample_rate, dtype="int16", workers=2):
    tracks, report = scan_folder(src, sample_rate)
    if not tracks:
        raise ValueError(f"no usable audio under {src}")
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    offsets = np.concatenate([[0], np.cumsum([t.length for t in tracks])])
    tmp = dst / f"audio.npy.tmp{os.getpid()}"
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(int(offsets[-1]),))
    # spawn, not fork: a forked child of a process that already ran torch ops can deadlock.
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    decoded = pool.imap(_decode, tracks, chunksize=4) if pool else map(_decode, tracks)
    try:
        for i, x in enumerate(decoded):
            x = x[:tracks[i].length]
            if dtype == "int16":
                x = np.round(np.clip(x, -1, 1) * 32767)
            array[offsets[i]:offsets[i] + len(x)] = x      # a short decode stays zero-padded
    finally:
        if pool:
            pool.close()
    array.flush()
    del array
    os.replace(tmp, dst / "audio.npy")
    index = {"sample_rate": sample_rate, "dtype": dtype, "source": str(src),
             "skipped": report.skipped,
             "tracks": [{"path": t.path, "offset": int(o), "length": t.length, "frames": t.frames,
                         "file_rate": t.file_rate, "channels": t.channels}
                        for t, o in zip(tracks, offsets[:-1])]}
    (dst / "index.json").write_text(json.dumps(index, indent=1))
    print(f"wrote {len(tracks)} tracks, {offsets[-1] / sample_rate / 3600:.2f} h at {sample_rate} Hz "
          f"({dtype}) to {dst}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="folder of audio files (searched recursively)")
    parser.add_argument("dst", help="cache folder to write (audio.npy + index.json)")
    parser.add_argument("--sample-rate", type=int, default=22050, help="the model's rate (CLMR: 22050)")
    parser.add_argument("--dtype", choices=["int16", "float32"], default="int16",
                        help="int16 halves the disk; float32 keeps samples bit-exact")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="decoding processes")
    a = parser.parse_args()
    prepare(a.src, a.dst, a.sample_rate, a.dtype, a.workers)

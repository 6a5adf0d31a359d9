"""Build a decode-once cache by hand (train.py builds one by itself with --cache auto):

    python -m ssl_min.prepare ~/music data/music_cache --sample_rate 22050
    python -m ssl_min.prepare ~/mtt data/mtt_cache --sample_rate 22050 --only split/mtat/train.npy
    python train.py --data data/music_cache ...

The cache itself: ssl_min/data/cache.py. `--only` keeps the files a split file lists, so
pretraining never sees the valid and test clips.
"""
import argparse
from pathlib import Path

from ssl_min.data.cache import ensure_cache
from ssl_min.data.labeled import split_list
from ssl_min.data.index import scan_folder


def prepare(src, dst, sample_rate, dtype="int16", workers=0, only=None):
    """only: a split file (labeled.split_list): keep just the files it lists (paths relative to src)."""
    tracks, report = scan_folder(src, sample_rate)
    if only:
        wanted = split_list(only)
        tracks = [t for t in tracks if str(Path(t.path).relative_to(src)) in wanted]
        print(f"{len(tracks)} of the files are listed in {only}")
    if not tracks:
        raise ValueError(f"no usable audio under {src}")
    ensure_cache(tracks, src, sample_rate, dst, dtype, workers, report.skipped)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="folder of audio files (searched recursively)")
    parser.add_argument("dst", help="cache folder to write (audio.npy + index.json)")
    parser.add_argument("--sample_rate", type=int, default=22050, help="the model's rate (CLMR: 22050)")
    parser.add_argument("--dtype", choices=["int16", "float32"], default="int16",
                        help="int16 halves the disk; float32 keeps samples bit-exact")
    parser.add_argument("--workers", type=int, default=0, help="decoding processes (0: the cores, fewer where "
                        "memory is short)")
    parser.add_argument("--only", default=None, help="a split file (e.g. MagnaTagATune's train.npy): cache only the "
                        "files it lists, so pretraining never sees the valid and test clips")
    a = parser.parse_args(argv)
    prepare(a.src, a.dst, a.sample_rate, a.dtype, a.workers, a.only)


if __name__ == "__main__":
    main()

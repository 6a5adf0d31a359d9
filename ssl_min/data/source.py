"""The one data path: a folder of audio (or a cache) -> the tracks to read chunks from.

    open_tracks(source, sample_rate, cache="auto") -> ([Track], ScanReport of the files left out)

    a cache folder (index.json + tracks/)     read as it is; its rate must be the model's
    a folder, cache="off"                     scanned (index.py); every chunk decoded from its file
    a folder, cache="auto"                    scanned; decoded once (cache.py) into
                                              FOLDER/.ssl_min_cache/<rate>hz when its files are
                                              compressed or at another rate, reused while no file changes
    a folder, cache=DIR                       scanned; decoded once into DIR

train.py and the exporter go through here (`python -m ssl_min.prepare` builds a cache with cache.py
directly); the probe's labeled layouts (labeled.py) scan the files their annotations list with the
same scan. `build=False` never decodes:
it reads the cache another process built (train.py's other ranks under torchrun).
"""
from pathlib import Path

from ssl_min.data.cache import default_cache_dir, ensure_cache, is_cache, load_cache, needs_cache
from ssl_min.data.index import scan_folder


def open_cache(cache_dir, sample_rate, verbose=True):
    """A cache folder -> ([CachedTrack], the ScanReport its build wrote), checked to be at the model's rate."""
    tracks, rate, report = load_cache(cache_dir)
    if rate != sample_rate:
        raise ValueError(f"cache {cache_dir} is at {rate} Hz, the model wants {sample_rate} Hz")
    if verbose:
        print(f"{len(tracks)} tracks from the decode-once cache {cache_dir}")
    return tracks, report


def open_tracks(source, sample_rate, cache="auto", build=True, verbose=True):
    """-> ([Track] to read model-rate chunks from, ScanReport) (see the module doc). Says what it
    did when verbose."""
    if is_cache(source):
        return open_cache(source, sample_rate, verbose)
    tracks, report = scan_folder(source, sample_rate, verbose)
    if cache == "off":
        return tracks, report
    if cache == "auto" and not needs_cache(tracks, sample_rate):
        if verbose:
            print("files are uncompressed and at the model's rate: read directly, no cache needed")
        return tracks, report
    where = None if cache == "auto" else cache
    if build:
        cache_dir = ensure_cache(tracks, source, sample_rate, where, skipped=report.skipped)
    else:
        cache_dir = Path(where or default_cache_dir(source, sample_rate))
    return open_cache(cache_dir, sample_rate, verbose)[0], report

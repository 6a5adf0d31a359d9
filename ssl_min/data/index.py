"""Scanning a collection: every file checked once, the bad ones counted and named, the result cached.

    scan(paths, rate, cache_file)  -> ([Track], ScanReport)   only new or changed files are decoded
    scan_folder(root, rate)        -> the same for every audio file under root, the index kept in
                                      <root>/.ssl_min_index.json (keyed by path, size and mtime), so a
                                      second start-up on 25,000 files reads one JSON file
"""
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ssl_min.data.audio import AUDIO_EXTENSIONS, Track, check_file, find_audio
from ssl_min.runtime.atomic import write_text_atomic


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


def file_stamp(path) -> str:
    """A file's size and mtime (ns), "size:mtime": with its path, what names its content in an index
    or a cache key. Raises OSError when there is no such file."""
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


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
            key = file_stamp(p)
        except OSError:
            report.add("missing file", p)
            continue
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
            tracks.append(Track(p, *entry["info"], sample_rate, stamp=key))
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

"""All file I/O for audio: find files, check them once, read chunks, and the datasets built on that.

The sample pipeline, the same whether it reads the audio files or the decode-once cache:
    file (any rate, any channels) -> mono (mean of channels) -> resample to `sample_rate` -> float32

* `scan(paths)` checks every file once when the index is built (header, length, a few decoded
  windows for silence and NaN/Inf) and returns the usable tracks plus a `ScanReport` that counts
  and names the rest. The result is cached in `<folder>/.ssl_min_index.json` (keyed by path,
  size and mtime), so a second start-up on 25,000 files reads one JSON file.
* `Track.read(start, n)` reads only the frames it needs (`soundfile`'s start/frames). When the
  file's rate differs from the model's, it reads a little context on both sides and starts on
  the resampler's period, so a chunk equals the same samples of the whole resampled track.
* `PairDataset` gives the positive pairs: two chunks from independent random offsets of one track.
  Randomness per item comes from (seed, sample id) where the sampler's id also encodes the epoch
  (`EpochSampler`), so workers never repeat each other and a resumed run draws the same chunks.
* Labeled sets for the probe: the DL101 tutorial's layout, MagnaTagATune as distributed, class
  folders or a CSV with a `label` column (`load_labeled`).
"""
import csv
import hashlib
import itertools
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch.utils.data import Dataset, DistributedSampler

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


def tracks_from(source, sample_rate, verbose=True):
    """A folder of audio or a cache folder (it has index.json + audio.npy) -> [Track]."""
    if (Path(source) / "index.json").exists() and (Path(source) / "audio.npy").exists():
        tracks, rate = load_cache(source)
        if rate != sample_rate:
            raise ValueError(f"cache {source} is at {rate} Hz, the model wants {sample_rate} Hz")
        if verbose:
            print(f"{len(tracks)} tracks from the decode-once cache {source}")
        return tracks
    return scan_folder(source, sample_rate, verbose)[0]


# ---------------------------------------------------------------- pretraining pairs

def item_generator(seed, sample_id):
    """A torch.Generator that depends only on (seed, sample_id): workers and resumes agree."""
    digest = hashlib.blake2b(f"{seed}:{sample_id}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


class EpochSampler(DistributedSampler):
    """DistributedSampler (shuffle, shard per process, set_epoch) that yields sample ids
    `epoch * len(dataset) + index`, so each item's randomness can depend on the epoch even inside
    persistent workers. One process: num_replicas=1, rank=0. `skip` drops the first ids of the
    epoch (a resumed run starts where it stopped without reading what it already used)."""
    skip = 0

    def __iter__(self):
        base = self.epoch * len(self.dataset)
        return (base + i for i in itertools.islice(super().__iter__(), self.skip, None))


def keep_long_enough(tracks, n_samples, verbose=True):
    """Drops tracks shorter than one chunk, counted and named (for pairs, never padded)."""
    short = [t for t in tracks if t.length < n_samples]
    if short and verbose:
        names = ", ".join(t.path for t in short[:3])
        print(f"skipped {len(short)} tracks shorter than one chunk ({n_samples} samples): {names}"
              + (" ..." if len(short) > 3 else ""))
    kept = [t for t in tracks if t.length >= n_samples]
    if not kept:
        raise ValueError(f"no track is at least one chunk ({n_samples} samples) long")
    return kept


class PairDataset(Dataset):
    """One item per track: two chunks from independent random offsets of the same track.
    Index with an id from EpochSampler (id % len is the track). -> (x1, x2), each (1, chunk).
    `transform`, if given, augments each chunk in the worker (else augment on the device)."""

    def __init__(self, tracks, chunk_samples, seed=0, transform=None, verbose=True):
        self.tracks = keep_long_enough(tracks, chunk_samples, verbose)
        self.chunk, self.seed, self.transform = chunk_samples, seed, transform

    def __len__(self):
        return len(self.tracks)

    def offsets(self, sample_id):
        """Two start offsets (model samples) for this id: on the track's resampling grid."""
        track = self.tracks[sample_id % len(self.tracks)]
        period = track.ratio[1]
        n_starts = (track.length - self.chunk) // period + 1
        g = item_generator(self.seed, sample_id)
        return [int(k) * period for k in torch.randint(n_starts, (2,), generator=g)], g

    def __getitem__(self, sample_id):
        track = self.tracks[sample_id % len(self.tracks)]
        (a, b), g = self.offsets(sample_id)
        x1, x2 = track.read(a, self.chunk)[None], track.read(b, self.chunk)[None]   # (1, chunk)
        if self.transform is not None:
            x1, x2 = self.transform(x1, generator=g), self.transform(x2, generator=g)
        return x1, x2


# ---------------------------------------------------------------- labeled sets for the probe

@dataclass
class LabeledSet:
    """Tracks with targets: multi-label (N, n_tags) 0/1, or multi-class (N,) class indices."""
    tracks: list
    targets: np.ndarray
    names: list          # tag or class names
    task: str            # "multilabel" | "multiclass"


def track_chunks(track, chunk_samples):
    """All non-overlapping chunks of a track (CLMR's evaluation): (n_chunks, 1, chunk).
    A track shorter than one chunk gives one zero-padded chunk."""
    x = track.read_all()
    n = max(1, x.shape[0] // chunk_samples)
    x = torch.nn.functional.pad(x, (0, max(0, n * chunk_samples - x.shape[0])))
    return x[:n * chunk_samples].reshape(n, 1, chunk_samples)


def _read_csv(path):
    """-> (header, rows). Tab- or comma-separated, told apart by the header line."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read annotation file {path}: {e}") from None
    lines = text.splitlines()
    delimiter = "\t" if lines and "\t" in lines[0] else ","
    rows = [r for r in csv.reader(lines, delimiter=delimiter) if r]
    if len(rows) < 2:
        raise ValueError(f"annotation file {path}: no rows under the header")
    return rows[0], rows[1:]


def _labeled_from_rows(header, rows, base, sample_rate, csv_path, path_column=0, tag_columns=None):
    """CSV rows -> LabeledSet. A `label` column makes it multi-class; else 0/1 tag columns."""
    if "label" in header:
        li = header.index("label")
        names = sorted({r[li] for r in rows if len(r) > li})
        task, col = "multiclass", li
    else:
        tag_columns = tag_columns or [i for i in range(len(header)) if i != path_column]
        if not tag_columns:
            raise ValueError(f"{csv_path}: no tag columns (need a `label` column or 0/1 tag columns)")
        names, task = [header[i] for i in tag_columns], "multilabel"
    paths, targets, bad = [], [], ScanReport()
    for n, r in enumerate(rows, start=2):
        try:
            if task == "multiclass":
                targets.append(names.index(r[col]))
            else:
                values = [float(r[i]) for i in tag_columns]
                if any(v not in (0.0, 1.0) for v in values):
                    raise ValueError
                targets.append(values)
            paths.append(str(Path(base) / r[path_column]))
        except (ValueError, IndexError):
            bad.add(f"malformed row in {Path(csv_path).name}", f"line {n}")
    tracks, report = scan(paths, sample_rate, Path(base) / ".ssl_min_index.json", verbose=False)
    for reason, items in bad.skipped.items():
        report.skipped[reason] = items
    good = {t.path for t in tracks}
    keep = [i for i, p in enumerate(paths) if p in good]
    print(f"{csv_path}: " + report.summary(len(rows)))
    if not keep:
        raise ValueError(f"{csv_path}: no usable rows")
    return LabeledSet(tracks, np.asarray([targets[i] for i in keep]), names, task)


def load_tutorial_split(root, split, sample_rate):
    """DL101 layout: ROOT/<split>/annotations.csv, first column the audio path relative to
    ROOT/<split>, then 0/1 tag columns (or a `label` column). None if the split is absent."""
    csv_path = Path(root) / split / "annotations.csv"
    if not csv_path.exists():
        return None
    header, rows = _read_csv(csv_path)
    return _labeled_from_rows(header, rows, csv_path.parent, sample_rate, csv_path)


def _split_list(path):
    """A published MTT split file -> set of mp3 paths. Accepts minzwon/sota-music-tagging-models'
    `split/mtat/{train,valid,test}.npy` (entries "clip_id<TAB>f/....mp3") or any text file with
    one such entry (or a bare path) per line."""
    path = Path(path)
    entries = np.load(path, allow_pickle=False) if path.suffix == ".npy" else path.read_text().splitlines()
    out = set()
    for e in entries:
        fields = [f for f in str(e).strip().split("\t") if f.endswith(".mp3")]
        if fields:
            out.add(fields[-1])
    if not out:
        raise ValueError(f"{path}: no .mp3 paths found in the split file")
    return out


def load_magnatagatune(root, sample_rate, split_files, n_tags=50):
    """MagnaTagATune as distributed: ROOT/annotations_final.csv (tab-separated: clip_id, 188 tags,
    mp3_path) and audio under ROOT/0 ... ROOT/f. The n_tags most frequent tags; the split from
    `split_files` = {"train": path, "valid": path, "test": path}."""
    header, rows = _read_csv(Path(root) / "annotations_final.csv")
    if header[0] != "clip_id" or header[-1] != "mp3_path":
        raise ValueError(f"{root}/annotations_final.csv: expected columns clip_id ... mp3_path")
    counts = np.zeros(len(header) - 2)
    for r in rows:
        counts += np.asarray(r[1:-1], dtype=float)
    top = [1 + int(i) for i in np.argsort(-counts, kind="stable")[:n_tags]]
    out = {}
    for split, f in split_files.items():
        wanted = _split_list(f)
        split_rows = [r for r in rows if r[-1] in wanted]
        out[split] = _labeled_from_rows(header, split_rows, root, sample_rate,
                                        Path(root) / f"annotations_final.csv[{split}]",
                                        path_column=len(header) - 1, tag_columns=top)
    return out


def load_class_folders(root, sample_rate, fractions=(0.7, 0.1, 0.2)):
    """One sub-folder per class (GTZAN style). ROOT/{train,valid,test}/<class>/ if present, else
    ROOT/<class>/ split deterministically by a hash of each file's path."""
    root = Path(root)
    has_splits = (root / "train").is_dir() and (root / "test").is_dir()
    base = {s: root / s for s in ("train", "valid", "test")} if has_splits else {"all": root}
    classes = sorted(d.name for d in next(iter(base.values())).iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"{root}: no class sub-folders")
    out = {}
    for split, folder in base.items():
        if not folder.is_dir():
            continue
        paths, labels = [], []
        for ci, c in enumerate(classes):
            files = find_audio(folder / c) if (folder / c).is_dir() else []
            paths += files
            labels += [ci] * len(files)
        tracks, report = scan(paths, sample_rate, folder / ".ssl_min_index.json", verbose=False)
        print(f"{folder}: " + report.summary(len(paths)))
        good = {t.path: t for t in tracks}
        keep = [i for i, p in enumerate(paths) if str(p) in good]
        out[split] = LabeledSet([good[str(paths[i])] for i in keep], np.asarray([labels[i] for i in keep]),
                                classes, "multiclass")
    if not has_splits:
        out = stratified_split(out.pop("all"), fractions)
    return out


def _hash01(path):
    return int(hashlib.md5(Path(path).name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def subset(ls, idx):
    return LabeledSet([ls.tracks[i] for i in idx], ls.targets[idx], ls.names, ls.task)


def one_hot_as_classes(sets):
    """Tag columns with exactly one 1 in every row (of every split) are classes written as tags
    (the tutorial's layout writes classes that way): -> the same sets as a multi-class task."""
    if any(ls.task != "multilabel" for ls in sets.values()):
        return sets
    if not all(len(ls.targets) and (ls.targets.sum(1) == 1).all() for ls in sets.values()):
        return sets
    return {s: LabeledSet(ls.tracks, ls.targets.argmax(1), ls.names, "multiclass") for s, ls in sets.items()}


def _strata(ls):
    """A stratum per track: its class, or (multi-label) its rarest tag ('' for no tag)."""
    if ls.task == "multiclass":
        return [str(c) for c in ls.targets]
    freq = ls.targets.sum(0)
    return [str(int(np.argmin(np.where(row > 0, freq, np.inf)))) if row.any() else "" for row in ls.targets]


def _allocate(n, fractions):
    """n tracks -> counts per split by largest remainder; then every split that can have one
    gets one (train first, then the last split: test, then the middle), taken from the largest."""
    raw = [f * n for f in fractions]
    counts = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: counts[i] - raw[i])[:n - sum(counts)]:
        counts[i] += 1
    for i in [0, len(counts) - 1, *range(1, len(counts) - 1)]:
        if counts[i] == 0:
            donor = max(range(len(counts)), key=lambda j: counts[j])
            if counts[donor] >= 2:
                counts[donor] -= 1
                counts[i] += 1
    return counts


def stratified_split(ls, fractions, names=("train", "valid", "test")):
    """Split a LabeledSet by track, stratified: within each class (or rarest tag) the tracks are
    ordered by a hash of their file name and cut by `fractions` (_allocate). Deterministic."""
    strata = _strata(ls)
    parts = {n: [] for n in names[:len(fractions)]}
    for s in sorted(set(strata)):
        members = sorted((i for i, x in enumerate(strata) if x == s), key=lambda i: _hash01(ls.tracks[i].path))
        start = 0
        for name, k in zip(parts, _allocate(len(members), fractions)):
            parts[name] += members[start:start + k]
            start += k
    return {n: subset(ls, np.asarray(sorted(idx), dtype=int)) for n, idx in parts.items()}


def carve_validation(ls, fraction=0.1):
    """A validation split carved from the training tracks, stratified -> {"train", "valid"}."""
    return stratified_split(ls, (1 - fraction, fraction))


class TooSmall(ValueError):
    """A labeled set too small to train, select and test a head: said in one line."""


def check_sizes(sets, where):
    """Every split must hold tracks; multi-class: every class needs a training track."""
    sizes = {s: len(ls.tracks) for s, ls in sets.items()}
    need = "at least 1 track in each of train, valid and test (2 per class or tag in train to carve a valid split)"
    if any(n == 0 for n in sizes.values()) or set(sizes) != {"train", "valid", "test"}:
        raise TooSmall(f"{where}: too few tracks to probe, splits {sizes}; need {need}")
    tr = sets["train"]
    if tr.task == "multiclass":
        missing = [tr.names[c] for c in range(len(tr.names)) if not (tr.targets == c).any()]
        if missing:
            raise TooSmall(f"{where}: no training track for class(es) {missing}, splits {sizes}; need {need}")


def _same_names(sets):
    """Splits read from separate CSVs must agree: the same tags, or the union of the classes
    (a split may lack a class) with every split's targets re-indexed into it."""
    first = next(iter(sets.values()))
    if first.task == "multilabel":
        for name, ls in sets.items():
            if ls.names != first.names:
                raise ValueError(f"split {name} has tags {ls.names[:5]}..., train has {first.names[:5]}...")
        return sets
    names = sorted({n for ls in sets.values() for n in ls.names})
    return {s: LabeledSet(ls.tracks, np.asarray([names.index(ls.names[t]) for t in ls.targets]), names, ls.task)
            for s, ls in sets.items()}


def load_labeled(root, sample_rate, mtt_split_dir=None):
    """Any supported labeled layout under ROOT -> {"train", "valid"?, "test"}: LabeledSet."""
    root = Path(root)
    if (root / "annotations_final.csv").exists():
        if mtt_split_dir is None:
            raise ValueError("MagnaTagATune needs split files: pass --mtt-split DIR with "
                             "train.npy/valid.npy/test.npy (see README)")
        files = {s: next((Path(mtt_split_dir) / f"{s}{ext}" for ext in (".npy", ".txt", ".tsv")
                          if (Path(mtt_split_dir) / f"{s}{ext}").exists()), None)
                 for s in ("train", "valid", "test")}
        return load_magnatagatune(root, sample_rate, {s: f for s, f in files.items() if f})
    if (root / "train" / "annotations.csv").exists():
        sets = {s: load_tutorial_split(root, s, sample_rate) for s in ("train", "valid", "test")}
        if sets["test"] is None:
            raise ValueError(f"{root}/test/annotations.csv is missing")
        return one_hot_as_classes(_same_names({s: v for s, v in sets.items() if v is not None}))
    if (root / "annotations.csv").exists():
        header, rows = _read_csv(root / "annotations.csv")
        return stratified_split(one_hot_as_classes({"all": _labeled_from_rows(
            header, rows, root, sample_rate, root / "annotations.csv")})["all"], (0.7, 0.1, 0.2))
    return load_class_folders(root, sample_rate)

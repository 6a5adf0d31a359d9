"""Labeled sets for the probe: the DL101 tutorial's layout, MagnaTagATune as distributed, class
folders, or a CSV with a `label` column (`load_labeled`); one-hot tag columns read as classes;
stratified, deterministic splits by track; one-line errors for sets too small to probe.

    load_labeled(root, sample_rate) -> {"train", "valid", "test": LabeledSet}   the entry point, first;
                                       the layouts' readers and the split helpers below it
"""
import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssl_min.data.audio import AUDIO_EXTENSIONS, find_audio
from ssl_min.data.index import ScanReport, scan


@dataclass
class LabeledSet:
    """Tracks with targets: multi-label (N, n_tags) 0/1, or multi-class (N,) class indices."""
    tracks: list
    targets: np.ndarray
    names: list          # tag or class names
    task: str            # "multilabel" | "multiclass"


def load_labeled(root, sample_rate, mtt_split_dir=None):
    """Any supported labeled layout under ROOT -> {"train", "valid"?, "test"}: LabeledSet."""
    root = Path(root)
    if (root / "annotations_final.csv").exists():
        if mtt_split_dir is None:
            raise ValueError("MagnaTagATune needs split files: pass --mtt_split DIR with "
                             "train.npy/valid.npy/test.npy (see docs/data.md)")
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


def split_list(path):
    """A published MTT split file -> set of audio paths. Accepts minzwon/sota-music-tagging-models'
    `split/mtat/{train,valid,test}.npy` (entries "clip_id<TAB>f/....mp3") or any text file with
    one such entry (or a bare path) per line."""
    path = Path(path)
    entries = np.load(path, allow_pickle=False) if path.suffix == ".npy" else path.read_text().splitlines()
    out = set()
    for e in entries:
        fields = [f for f in str(e).strip().split("\t") if Path(f).suffix.lower() in AUDIO_EXTENSIONS]
        if fields:
            out.add(fields[-1])
    if not out:
        raise ValueError(f"{path}: no audio paths found in the split file")
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
        wanted = split_list(f)
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

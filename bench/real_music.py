"""Real-music benchmark: soundtrack identification from Debian's game-soundtrack packages.

    python bench/real_music.py                       # make bench-music: build, pretrain (--preset cpu), probe
    python bench/real_music.py --only_data           # just build the folders

1. `apt-get download` each package (cached under WORK/debs) and `dpkg -x` it; ufoai's music comes
   in a .pk3 (a zip). Audio files of at least a minute are tracks, once each: byte-identical copies
   (drascula ships its music once per language) count once, and a song's separate instrument stems
   (Frets on Fire: guitar.ogg next to song.ogg) are not tracks of their own. One class per package
   with at least 8 tracks; a package with fewer gives all its tracks to the unlabeled pool.
2. Split by track, per class, deterministically (a hash of the file name): half the tracks form
   the unlabeled pool (the compressed files as they are, hard-linked into WORK/pool), the other
   half the labeled set, itself train / valid / test by track (50 / 25 / 25, at least one each).
   Each labeled track gives up to 4 non-overlapping 30-s clips from its middle, written as 22050 Hz
   mono wav under WORK/labeled/<split>/<class>/, so no track is in two splits.
3. `train.py --data WORK/pool --preset cpu` (the decode-once cache is built on first use), then
   `probe.py` on WORK/labeled: the pretrained, random-init and MFCC rows, one protocol.
4. The same three rows on `--folds` (5) other splits of the labeled tracks (by track, per class,
   50/25/25 as in step 2, ordered by a hash of the fold and the track), features extracted once:
   one split of a few test tracks per class is noisy (the macro PR-AUC of one row moved by 0.1-0.3 between
   splits), so runs are compared on the mean over splits. `--probe_only --out RUN` redoes this.
Every figure printed comes from this run; wall-clock times include the cache build.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ssl_min.data import AUDIO_EXTENSIONS  # noqa: E402

PACKAGES = ["wesnoth-1.16-music", "ufoai-music", "hyperrogue-music", "colobot-common-sounds", "fillets-ng-data",
            "fretsonfire-songs-muldjord", "fretsonfire-songs-sectoid", "asc-music", "boswars-data", "fb-music-high",
            "drascula-music", "warzone2100-music", "supertux-data", "hedgewars-data", "freedroidrpg-data"]
STEMS = {"guitar", "rhythm", "drums", "bass", "vocals", "crowd"}     # parts of a song.ogg beside them
MIN_SECONDS, MIN_TRACKS, CLIP_SECONDS, CLIPS_PER_TRACK, CLIP_RATE = 60.0, 8, 30.0, 4, 22050


def fetch(package, work):
    """The package's files, extracted under work/x/<package> (downloaded once)."""
    debs, x = work / "debs", work / "x" / package
    if not x.exists():
        debs.mkdir(parents=True, exist_ok=True)
        if not list(debs.glob(f"{package}_*.deb")):
            subprocess.run(["apt-get", "download", package], cwd=debs, check=True, capture_output=True)
        x.mkdir(parents=True)
        subprocess.run(["dpkg", "-x", str(next(debs.glob(f"{package}_*.deb"))), str(x)], check=True)
        for pk3 in x.rglob("*.pk3"):
            zipfile.ZipFile(pk3).extractall(pk3.parent / (pk3.stem + "_pk3"))
    return x


def tracks_of(folder):
    """Audio files of at least MIN_SECONDS -> [(path, seconds, name)], sorted by path; each
    recording once (byte-identical copies and instrument stems beside a song.* left out); name:
    the file's stem, or parent_stem where two tracks share a stem."""
    out, seen = [], set()
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() not in AUDIO_EXTENSIONS or not p.is_file():
            continue
        if p.stem.lower() in STEMS and any(q.stem.lower() == "song" for q in p.parent.iterdir()):
            continue
        try:
            info = sf.info(str(p))
        except Exception:
            continue
        if info.duration < MIN_SECONDS:
            continue
        digest = hashlib.md5(p.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            out.append((p, info.duration))
    stems = [p.stem for p, _ in out]
    return [(p, sec, p.stem if stems.count(p.stem) == 1 else f"{p.parent.name}_{p.stem}") for p, sec in out]


def h01(name):
    return int(hashlib.md5(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def build(work):
    """-> (pool folder, labeled folder, summary {"packages", "classes": {package: counts},
    "pool_only": {package: counts}})."""
    pool, labeled = work / "pool", work / "labeled"
    summary = {}
    if (work / "summary.json").exists():
        summary = json.loads((work / "summary.json").read_text())
        if summary.get("packages") != PACKAGES:
            raise SystemExit(f"{work} was built from other packages ({summary.get('packages', 'an older list')}): "
                             f"give another --work, or delete {work}/summary.json, pool and labeled to rebuild")
        return pool, labeled, summary
    summary["packages"], summary["classes"], summary["pool_only"] = PACKAGES, {}, {}
    for package in PACKAGES:
        tracks = tracks_of(fetch(package, work))
        tracks.sort(key=lambda t: (h01(t[0].name), t[2]))
        if len(tracks) < MIN_TRACKS:
            print(f"{package}: {len(tracks)} tracks of >= {MIN_SECONDS:.0f} s, fewer than {MIN_TRACKS}: "
                  "not a class; its tracks go to the unlabeled pool")
            parts = {"pool": tracks}
        else:
            n_pool = len(tracks) // 2
            rest = tracks[n_pool:]
            n_valid = n_test = max(1, len(rest) // 4)
            parts = {"pool": tracks[:n_pool], "test": rest[:n_test], "valid": rest[n_test:n_test + n_valid],
                     "train": rest[n_test + n_valid:]}
        for split, items in parts.items():
            for path, seconds, stem in items:
                name = f"{package}__{stem}"
                if split == "pool":
                    dst = pool / package / f"{name}{path.suffix}"
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    if not dst.exists():
                        try:
                            os.link(path, dst)
                        except OSError:
                            dst.write_bytes(path.read_bytes())
                    continue
                x, rate = sf.read(str(path), dtype="float32", always_2d=True)
                x = x.mean(1)
                x = AF.resample(torch.from_numpy(x), rate, CLIP_RATE).numpy()
                n = int(CLIP_SECONDS * CLIP_RATE)
                k = min(CLIPS_PER_TRACK, len(x) // n)
                start = (len(x) - k * n) // 2
                for j in range(k):
                    dst = labeled / split / package / f"{name}_{j}.wav"
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    sf.write(dst, x[start + j * n:start + (j + 1) * n], CLIP_RATE)
        counts = {s: len(v) for s, v in parts.items()} | {
            "pool_hours": round(sum(sec for _, sec, _ in parts["pool"]) / 3600, 2)}
        summary["classes" if len(parts) > 1 else "pool_only"][package] = counts
        print(f"{package}: {counts}")
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    return pool, labeled, summary


def run(cmd, log):
    """Run a command with its output in a log file; -> seconds. Fails loudly with the log's tail."""
    t0 = time.time()
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({rc}):\n{Path(log).read_text()[-3000:]}")
    return time.time() - t0


def source_track(path):
    """A clip's source track: its file name without the `_<j>.wav` clip index."""
    return Path(path).stem.rsplit("_", 1)[0]


def fold_splits(ls, fold):
    """Re-split all labeled clips by source track, per class, 50/25/25 as build() does, ordered by a
    hash of (fold, track): -> {"train", "valid", "test"}: clip indices. No track in two splits."""
    out = {"train": [], "valid": [], "test": []}
    for c in range(len(ls.names)):
        idx = [i for i in range(len(ls.tracks)) if ls.targets[i] == c]
        tracks = sorted({source_track(ls.tracks[i].path) for i in idx}, key=lambda t: h01(f"{fold}:{t}"))
        n = max(1, len(tracks) // 4)
        part = {t: ("test" if k < n else "valid" if k < 2 * n else "train") for k, t in enumerate(tracks)}
        for i in idx:
            out[part[source_track(ls.tracks[i].path)]].append(i)
    return out


def probe_folds(checkpoint, labeled, folds, window=0, features="output"):
    """The probe's three rows on `folds` re-splits of the labeled tracks (features extracted once)
    -> {row: [per-fold results]}. One split of a few test tracks per class is noisy; the mean over re-splits is
    what a comparison between runs should read."""
    from probe import frozen_features, probe_features, row_extractors
    from ssl_min.data.labeled import LabeledSet, load_labeled, subset
    from ssl_min.models.load import load_encoder
    from ssl_min.runtime.formulation import resolve_conv
    encoder, info = load_encoder(checkpoint)
    rate, chunk = info["sample_rate"], window or info["chunk_samples"]
    encoder.conv, line = resolve_conv("auto", "cpu", info["arch"], chunk)       # as probe.py's --conv auto
    print(line)
    sets = load_labeled(labeled, rate)
    every = LabeledSet([t for ls in sets.values() for t in ls.tracks],
                       np.concatenate([ls.targets for ls in sets.values()]), sets["train"].names, "multiclass")
    extractors, keys = row_extractors(["pretrained", "random_init", "mfcc"], encoder, info, sets["train"].tracks,
                                      chunk, torch.device("cpu"), features)
    feats = frozen_features(extractors, keys, {"all": every}, chunk, torch.device("cpu"),
                            Path(checkpoint).parent / "embeddings", num_workers=2)
    args = argparse.Namespace(mlp=False, seed=0)
    results = {name: [] for name in extractors}
    for fold in range(folds):
        split = fold_splits(every, fold)
        fold_sets = {s: subset(every, np.asarray(idx)) for s, idx in split.items()}
        for name, by_split in feats.items():
            x, owner = by_split["all"]                # chunk features (n, D), clip of each chunk (n,)
            per = {}
            for s, idx in split.items():          # chunk rows of this split's clips, owners renumbered
                new = torch.full((len(every.tracks),), -1, dtype=torch.long)
                new[torch.as_tensor(idx)] = torch.arange(len(idx))
                keep = new[owner] >= 0
                per[s] = (x[keep], new[owner][keep])
            results[name].append(probe_features(per, fold_sets, args))
    return results


def print_folds(results, folds):
    print(f"\nmean over {folds} re-splits of the labeled tracks, by track:\n")
    print("| encoder | macro ROC-AUC | macro PR-AUC | accuracy | PR-AUC per split |\n| --- | --- | --- | --- | --- |")
    for name, rs in results.items():
        roc, pr, acc = (np.array([r[k] for r in rs]) for k in ("roc_auc", "pr_auc", "accuracy"))
        print(f"| {name} | {roc.mean():.3f} ± {roc.std():.3f} | {pr.mean():.3f} ± {pr.std():.3f} | "
              f"{acc.mean():.3f} | {' '.join(f'{v:.2f}' for v in pr)} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="data/real_music", help="where packages, folders and the run go")
    ap.add_argument("--preset", default="cpu", help="train.py preset")
    ap.add_argument("--out", default=None, help="run folder (default WORK/runs/<preset>)")
    ap.add_argument("--train_args", default="", help="extra train.py flags, e.g. '--max_steps 200'")
    ap.add_argument("--only_data", action="store_true", help="build the folders and stop")
    ap.add_argument("--folds", type=int, default=5, help="re-splits of the labeled tracks for the mean (0: none)")
    ap.add_argument("--probe_only", action="store_true", help="probe an existing run folder (--out) again")
    ap.add_argument("--features", choices=["output", "blocks"], default="output",
                    help="probe.py --features: the encoder's output, or every block's mean and std over time")
    ap.add_argument("--window", type=int, default=0, help="re-splits only: probe windows of this many samples "
                    "(0: the training chunk; longer ones need a mean-pooled encoder)")
    args = ap.parse_args()
    work = Path(args.work).resolve()
    pool, labeled, summary = build(work)
    classes, every = summary["classes"], list(summary["classes"].values()) + list(summary["pool_only"].values())
    hours, n_pool = sum(v["pool_hours"] for v in every), sum(v["pool"] for v in every)
    print(f"{len(classes)} classes; pool {n_pool} tracks, {hours:.1f} h; labeled tracks "
          + ", ".join(f"{s} {sum(v[s] for v in classes.values())}" for s in ("train", "valid", "test")))
    if args.only_data:
        return
    out = Path(args.out or work / "runs" / args.preset)
    if args.probe_only:
        print_folds(probe_folds(out / "checkpoint.pt", labeled, args.folds, args.window, args.features), args.folds)
        return
    t_train = run([sys.executable, "train.py", "--data", str(pool), "--preset", args.preset, "--out", str(out),
                   *args.train_args.split()], out.parent / f"{out.name}_train.log")
    t_probe = run([sys.executable, "probe.py", "--checkpoint", str(out / "checkpoint.pt"), "--data", str(labeled),
                   "--features", args.features], out.parent / f"{out.name}_probe.log")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    wait = np.mean([r["data_wait"] for r in rows[1:]]) if len(rows) > 1 else float("nan")
    report = json.loads((out / "probe_checkpoint.json").read_text())
    print(f"\npretraining: {t_train / 60:.1f} min wall-clock (including the cache build, if this start built it), {torch.load(out / 'checkpoint.pt', weights_only=True)['step']} steps, "
          f"mean data wait {100 * wait:.1f} % of step time; probe {t_probe / 60:.1f} min")
    print(f"test set ({report['tracks']['test']} clips, {len(report['names'])} soundtracks):\n")
    print("| encoder | accuracy | macro F1 | macro ROC-AUC | macro PR-AUC | head L2 |\n| --- | --- | --- | --- | --- | --- |")
    for name, r in report["results"].items():
        print(f"| {name} | {r['accuracy']:.3f} | {r['macro_f1']:.3f} | {r['roc_auc']:.3f} | {r['pr_auc']:.3f} "
              f"| {r['head']['l2']:g} |")
    if args.folds:
        print_folds(probe_folds(out / "checkpoint.pt", labeled, args.folds, args.window, args.features), args.folds)


if __name__ == "__main__":
    main()

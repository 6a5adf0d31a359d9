"""Export embeddings: a folder of audio -> one .npy per file, for use anywhere (numpy, sklearn, ...).

    python -m ssl_min.embed --checkpoint runs/demo/checkpoint.pt --data ~/music --out emb/    # make embed
    python -m ssl_min.embed --checkpoint clmr_checkpoint.pt --data ~/music --out emb/ --timestamps

For FOLDER/a/b.mp3 it writes OUT/a/b.mp3.npy (the folder tree mirrored, the file name kept whole so
b.mp3 and b.wav never collide):
* default: the track embedding, (D,) float32, the mean over the track's non-overlapping chunks of
  the encoder's output (the probe's aggregation); a track shorter than a chunk is zero-padded;
  --features blocks reads every block's mean and std over each chunk instead (the probe's
  layer-wise readout; D is their total width);
* --timestamps: (n_chunks, D) per-chunk embeddings, and OUT/a/b.mp3.times.npy (n_chunks,) with
  each chunk's centre time in seconds.
OUT/index.csv lists every exported file (file, seconds, shape, features, dim). Unreadable, silent or corrupt files
are skipped and named. OUT/export.json records what wrote the folder: the encoder's weights (a
fingerprint), the rate, the chunk length, --timestamps, and each source file's size and mtime. A
second run with the same encoder and settings exports only new or changed files; with another
encoder or other settings it refuses in one line (--overwrite re-exports everything), so a folder
never holds the embeddings of two models. The checkpoint may be ssl_min's
or CLMR's (ssl_min/models/load.py). Inference is batched across files, no gradients, in eval mode.
"""
import argparse
import csv
import io
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ssl_min.data.index import file_stamp
from ssl_min.data.source import open_tracks
from ssl_min.evaluate.blocks import FEATURES, readout
from ssl_min.evaluate.extract import chunk_batches
from ssl_min.models.load import load_encoder, pick_device, weights_id
from ssl_min.runtime.atomic import atomic_write, write_text_atomic
from ssl_min.runtime.cpu_memory import keep_freed_memory
from ssl_min.runtime.formulation import resolve_conv


def save_npy(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, array)

    atomic_write(path, write)


def track_embeddings(encoder, tracks, chunk, batch_size=64, num_workers=2, device="cpu"):
    """Yields (i, (n_chunks, D) float32) for each track i in order: the encoder's embedding of every
    non-overlapping chunk, batched across tracks, eval mode, no gradients (the exporter's and the
    neighbours page's embeddings)."""
    pending = {}
    encoder.eval()
    with torch.no_grad():
        for x, owner in chunk_batches(tracks, chunk, batch_size, num_workers):
            h = encoder(x.to(device)).float().cpu()                      # (b, D)
            for i in owner.unique().tolist():
                pending.setdefault(i, []).append(h[owner == i])
            for i in [i for i in pending if i < int(owner.max())]:       # tracks come in order
                yield i, torch.cat(pending.pop(i))
    for i in sorted(pending):
        yield i, torch.cat(pending.pop(i))


class MixedExport(ValueError):
    """An export folder written by another encoder or with other settings: said in one line."""


def export_settings(encoder, info, timestamps, features="output"):
    """What must match for two runs to write into one folder (the formulation may differ: it rounds
    differently, it is the same function)."""
    return {"encoder": weights_id(encoder), "source": info["source"], "sample_rate": info["sample_rate"],
            "chunk_samples": info["chunk_samples"], "timestamps": bool(timestamps), "features": features}


def export(checkpoint, data, out, timestamps=False, batch_size=64, num_workers=2, device="cpu", conv="reference",
           overwrite=False, features="output"):
    """-> (n exported now, n already there, ScanReport of skipped files). conv: "reference", "fast"
    or "auto" (measured here, said). features: "output" or "blocks" (ssl_min/evaluate/blocks.py).
    Raises MixedExport when `out` holds another encoder's export (or another setting's) and not
    `overwrite`."""
    encoder, info = load_encoder(checkpoint)
    rate, chunk = info["sample_rate"], info["chunk_samples"]
    encoder.conv, line = resolve_conv(conv, device, info["arch"], chunk)
    print(line)
    model = readout(encoder.to(device), features)                 # a bad name is refused before any file is read
    data, out = Path(data), Path(out)
    settings, record = export_settings(encoder, info, timestamps, features), out / "export.json"
    previous = json.loads(record.read_text()) if record.exists() else None
    if previous is not None:
        previous["settings"].setdefault("features", "output")   # exports from before --features read the output
    if previous is None and not overwrite and out.is_dir() and any(out.rglob("*.npy")):
        raise MixedExport(f"{out} holds .npy files but no export.json (an export of unknown origin): pass "
                          "--overwrite to export into it again, or choose another --out")
    if previous is not None and previous["settings"] != settings and not overwrite:
        changed = sorted(k for k in settings if previous["settings"].get(k) != settings[k])
        raise MixedExport(f"{out} holds an export with another {', '.join(changed)} (export.json): pass --overwrite "
                          "to re-export every file, or choose another --out")
    stamps = {} if previous is None or overwrite or previous["settings"] != settings else previous["files"]
    tracks, report = open_tracks(data, rate, cache="off")
    target = {t.path: out / (str(Path(t.path).relative_to(data)) + ".npy") for t in tracks}
    todo = [t for t in tracks if not target[t.path].exists() or stamps.get(t.path) != file_stamp(t.path)]
    print(f"{info['source']} encoder, {rate} Hz, {chunk}-sample chunks: {len(todo)} files to export, "
          f"{len(tracks) - len(todo)} already in {out}")
    done = 0
    bar = tqdm(total=len(todo), unit="file", desc="embedding")
    for i, feats in track_embeddings(model, todo, chunk, batch_size, num_workers, device):
        feats = feats.numpy()                                             # (n_chunks, D)
        path = target[todo[i].path]
        if timestamps:
            save_npy(path.with_name(path.name[:-4] + ".times.npy"),
                     ((np.arange(len(feats)) + 0.5) * chunk / rate).astype(np.float32))
        save_npy(path, feats if timestamps else feats.mean(0))
        stamps[todo[i].path] = file_stamp(todo[i].path)
        done += 1
        bar.update(1)
    bar.close()
    rows = [["file", "seconds", "shape", "features", "dim"]]
    for t in tracks:
        shape = np.load(target[t.path], mmap_mode="r").shape
        rows.append([str(Path(t.path).relative_to(data)), f"{t.length / rate:.3f}", "x".join(map(str, shape)),
                     features, shape[-1]])
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    text = buf.getvalue()
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "index.csv", text)
    write_text_atomic(record, json.dumps({"checkpoint": str(checkpoint), "settings": settings,
                                          "files": {t.path: stamps[t.path] for t in tracks}}, indent=1))
    print(f"exported {done} files to {out} ({len(tracks) - done} already there); index {out / 'index.csv'}")
    if report.skipped:
        print(report.summary(len(tracks) + report.n_skipped))
    return done, len(tracks) - done, report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="ssl_min checkpoint (checkpoint.pt / best.pt) or CLMR's")
    ap.add_argument("--data", required=True, help="folder of audio, searched recursively")
    ap.add_argument("--out", required=True, help="output folder (the input tree is mirrored)")
    ap.add_argument("--timestamps", action="store_true", help="per-chunk embeddings and their centre times")
    ap.add_argument("--features", choices=FEATURES, default="output",
                    help="'output': the encoder's output (D = its width); 'blocks': every block's mean and std over "
                    "each chunk, concatenated (the probe's layer-wise readout, ssl_min/evaluate/blocks.py); index.csv "
                    "says the dimension")
    ap.add_argument("--batch_size", type=int, default=64, help="chunks per forward pass")
    ap.add_argument("--num_workers", type=int, default=2, help="DataLoader workers decoding files")
    ap.add_argument("--device", default="auto", help="'auto' (cuda if available), 'cpu' or 'cuda'")
    ap.add_argument("--overwrite", action="store_true", help="export every file again into an OUT that another "
                    "encoder or other settings wrote (without it such an OUT is refused)")
    ap.add_argument("--conv", choices=["auto", "reference", "fast"], default="auto",
                    help="the encoder's formulation: CLMR's module stack, the fast CPU one, or whichever is "
                    "measured faster here (CUDA: the reference)")
    a = ap.parse_args(argv)
    device = pick_device(a.device)
    if device.type == "cpu":
        keep_freed_memory()                                      # faster extraction: cpu_memory.py
    try:
        export(a.checkpoint, a.data, a.out, a.timestamps, a.batch_size, a.num_workers, device, a.conv, a.overwrite,
               a.features)
    except MixedExport as e:
        raise SystemExit(f"embed: {e}")

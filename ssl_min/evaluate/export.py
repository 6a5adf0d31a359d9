"""Export embeddings: a folder of audio -> one .npy per file, for use anywhere (numpy, sklearn, ...).

    python -m ssl_min.embed --checkpoint runs/demo/checkpoint.pt --data ~/music --out emb/    # make embed
    python -m ssl_min.embed --checkpoint clmr_checkpoint.pt --data ~/music --out emb/ --timestamps

For FOLDER/a/b.mp3 it writes OUT/a/b.mp3.npy (the folder tree mirrored, the file name kept whole so
b.mp3 and b.wav never collide):
* default: the track embedding, (D,) float32, the mean over the track's non-overlapping chunks of
  the encoder's output (the probe's aggregation); a track shorter than a chunk is zero-padded;
* --timestamps: (n_chunks, D) per-chunk embeddings, and OUT/a/b.mp3.times.npy (n_chunks,) with
  each chunk's centre time in seconds.
OUT/index.csv lists every exported file (file, seconds, shape). Unreadable, silent or corrupt files
are skipped and named; a second run skips files already exported. The checkpoint may be ssl_min's
or CLMR's (ssl_min/models/load.py). Inference is batched across files, no gradients, in eval mode.
"""
import argparse
import csv
import io
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ssl_min.data.source import open_tracks
from ssl_min.evaluate.extract import chunk_batches
from ssl_min.models.load import load_encoder, pick_device
from ssl_min.runtime.atomic import atomic_write, write_text_atomic
from ssl_min.runtime.cpu_memory import keep_freed_memory
from ssl_min.runtime.formulation import resolve_conv


def save_npy(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, array)

    atomic_write(path, write)


def export(checkpoint, data, out, timestamps=False, batch_size=64, num_workers=2, device="cpu", conv="reference"):
    """-> (n exported now, n already there, ScanReport of skipped files). conv: "reference", "fast"
    or "auto" (measured here, said)."""
    encoder, info = load_encoder(checkpoint)
    rate, chunk = info["sample_rate"], info["chunk_samples"]
    encoder.conv, line = resolve_conv(conv, device, info["arch"], chunk)
    print(line)
    encoder = encoder.to(device)
    tracks, report = open_tracks(data, rate, cache="off")
    data, out = Path(data), Path(out)
    target = {t.path: out / (str(Path(t.path).relative_to(data)) + ".npy") for t in tracks}
    todo = [t for t in tracks if not target[t.path].exists()]
    print(f"{info['source']} encoder, {rate} Hz, {chunk}-sample chunks: {len(todo)} files to export, "
          f"{len(tracks) - len(todo)} already in {out}")
    pending, done = {}, 0

    def flush(i):
        nonlocal done
        feats = torch.cat(pending.pop(i)).numpy()                      # (n_chunks, D)
        path = target[todo[i].path]
        if timestamps:
            save_npy(path.with_name(path.name[:-4] + ".times.npy"),
                     ((np.arange(len(feats)) + 0.5) * chunk / rate).astype(np.float32))
        save_npy(path, feats if timestamps else feats.mean(0))
        done += 1

    bar = tqdm(total=len(todo), unit="file", desc="embedding")
    with torch.no_grad():
        for x, owner in chunk_batches(todo, chunk, batch_size, num_workers):
            h = encoder(x.to(device)).float().cpu()                      # (b, D)
            for i in owner.unique().tolist():
                pending.setdefault(i, []).append(h[owner == i])
            for i in [i for i in pending if i < int(owner.max())]:       # tracks come in order
                flush(i)
                bar.update(1)
        for i in list(pending):
            flush(i)
            bar.update(1)
    bar.close()
    rows = [["file", "seconds", "shape"]]
    for t in tracks:
        shape = np.load(target[t.path], mmap_mode="r").shape
        rows.append([str(Path(t.path).relative_to(data)), f"{t.length / rate:.3f}", "x".join(map(str, shape))])
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    text = buf.getvalue()
    write_text_atomic(out / "index.csv", text)
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
    ap.add_argument("--batch_size", type=int, default=64, help="chunks per forward pass")
    ap.add_argument("--num_workers", type=int, default=2, help="DataLoader workers decoding files")
    ap.add_argument("--device", default="auto", help="'auto' (cuda if available), 'cpu' or 'cuda'")
    ap.add_argument("--conv", choices=["auto", "reference", "fast"], default="auto",
                    help="the encoder's formulation: CLMR's module stack, the fast CPU one, or whichever is "
                    "measured faster here (CUDA: the reference)")
    a = ap.parse_args(argv)
    device = pick_device(a.device)
    if device.type == "cpu":
        keep_freed_memory()                                      # faster extraction: cpu_memory.py
    export(a.checkpoint, a.data, a.out, a.timestamps, a.batch_size, a.num_workers, device, a.conv)

"""Data loading throughput: chunk pairs per second from mp3 files, ogg files and the decode-once
cache, with 0, 1 and 2 DataLoader workers, next to the training speed the loader has to feed.

    python bench/data.py                          # generated 44.1 kHz stereo music-like files
    python bench/data.py --music /usr/share/games/wesnoth/1.16/data/core/music   # real recordings

The training figure is one optimizer step of the chosen preset's model (fp32 and bf16, batch of
--batch pairs) on this machine; the loader keeps up when its pairs/s is above the model's.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ssl_min.data import PairDataset, StreamSampler, open_tracks, scan_folder  # noqa: E402
from ssl_min.config import PRESETS, Config, resolve  # noqa: E402
from ssl_min.runtime.cpu_memory import keep_freed_memory  # noqa: E402
from ssl_min.objectives import NTXent  # noqa: E402
from ssl_min.models import build_model  # noqa: E402
from ssl_min.runtime.precision import native_bf16  # noqa: E402
from ssl_min.prepare import prepare  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--music", default=None, help="a folder of real recordings (default: generate some)")
parser.add_argument("--preset", default="clmr", choices=sorted(PRESETS), help="model and chunk length to feed")
parser.add_argument("--batch", type=int, default=48, help="pairs per batch")
parser.add_argument("--batches", type=int, default=6, help="timed batches per setting")
parser.add_argument("--index_files", type=int, default=25000, help="files for the index start-up timing (0 skips it)")


def generate(folder, ext, n=24, seconds=30, sr=44100):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    t = np.arange(seconds * sr) / sr
    for i in range(n):
        x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in rng.uniform(80, 2000, 6)) / 6
        x = x[:, None] * np.array([[1.0, 0.8]]) + 0.01 * rng.standard_normal((len(t), 2))
        sf.write(folder / f"{i:03d}.{ext}", (0.4 * x).astype(np.float32), sr)
    return folder


def pairs_per_second(source, workers, cfg, args):
    """The steady stream: one endless loader iterator (as train.py makes it), warmed up by two
    batches, then --batches timed batches. Epoch ends do not exist for it, so nothing restarts."""
    ds = PairDataset(open_tracks(source, cfg.sample_rate, 'off', verbose=False)[0], cfg.chunk_samples, verbose=False)
    loader = iter(DataLoader(ds, batch_size=args.batch, sampler=StreamSampler(args.batch), num_workers=workers))
    for _ in range(2):
        next(loader)                                 # start the workers, fill their prefetch queues
    t0 = time.perf_counter()
    n = sum(next(loader)[0].shape[0] for _ in range(args.batches))
    return n / (time.perf_counter() - t0)


def train_pairs_per_second(precision, cfg, args):
    model = build_model(cfg.n_blocks, cfg.width, cfg.pool, cfg.proj_hidden, cfg.proj_dim)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(2 * args.batch, 1, cfg.chunk_samples)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    for i in range(3):
        if i == 1:
            t0 = time.perf_counter()
        with ctx:
            loss = NTXent()(*model(x).chunk(2))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return args.batch * 2 / (time.perf_counter() - t0)


def index_startup(root, n):
    """Seconds to scan n small files: the first time (every file checked) and from the cache."""
    root.mkdir()
    x = np.zeros((800, 1), np.float32)
    x[::7] = 0.1
    for i in range(n):
        sf.write(root / f"{i:06d}.wav", x, 8000)
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        tracks, _ = scan_folder(root, 8000, verbose=False)
        times.append(time.perf_counter() - t0)
    assert len(tracks) == n
    return times


def main():
    # Under a main guard: prepare() decodes in spawned processes, which re-import this file.
    args = parser.parse_args()
    print(f"memory: {keep_freed_memory()}")                  # as train.py does on the CPU
    # the preset's shapes; precision fixed, as this bench times each precision itself (no start-up timing)
    cfg = resolve(Config(**{**PRESETS[args.preset], "data": "-", "precision": "fp32", "conv": "reference"}))
    tmp = Path(tempfile.mkdtemp(prefix="ssl_min_bench_"))
    sources = {}
    if args.music:
        sources["your files"] = Path(args.music)
        scan_folder(args.music, cfg.sample_rate)                       # prints what it found
    else:
        sources["mp3 44.1k stereo"] = generate(tmp / "mp3", "mp3")
        sources["ogg 44.1k stereo"] = generate(tmp / "ogg", "ogg")
    first = next(iter(sources.values()))
    t0 = time.perf_counter()
    prepare(first, tmp / "cache", cfg.sample_rate, workers=os.cpu_count())
    print(f"decode-once cache built in {time.perf_counter() - t0:.1f} s")
    sources["cache (int16)"] = tmp / "cache"

    print(f"\npreset={args.preset}: {cfg.chunk_samples} samples @ {cfg.sample_rate} Hz, batch {args.batch} pairs, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cores")
    print(f"{'source':<20}" + "".join(f"{f'{w} workers':>14}" for w in (0, 1, 2)) + "   (chunk pairs / s)")
    for name, source in sources.items():
        print(f"{name:<20}" + "".join(f"{pairs_per_second(source, w, cfg, args):14.1f}" for w in (0, 1, 2)))
    bf16_ok = native_bf16("cpu")
    for precision in ("fp32", "bf16") if bf16_ok else ("fp32",):
        print(f"{'model needs (' + precision + ')':<20}{train_pairs_per_second(precision, cfg, args):14.1f}   pairs / s, one training step")
    if not bf16_ok:
        print("(bf16 not native on this CPU: emulated, ~100x slower, not timed; train.py uses fp32 here)")
    if args.index_files:
        first, cached = index_startup(tmp / "many", args.index_files)
        print(f"\nindex of {args.index_files} files: first scan {first:.1f} s (every file opened and "
              f"decoded in 3 windows), start-up from the cached index {cached:.2f} s")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()

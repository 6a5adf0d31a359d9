"""Augmentation throughput: the DL101 tutorial's chain at 22050 Hz on 2.7 s clips, as seconds of
audio augmented per wall-clock second, batched (one call on a batch of 48) versus the same module
called example by example. Run: python bench/augment.py [--device cuda]"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ssl_min.augment import PitchShift, Reverb, build_chain  # noqa: E402
from ssl_min.runtime.cpu_memory import keep_freed_memory  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--device", default="cpu", help="where the batch lives")
parser.add_argument("--batch", type=int, default=48, help="clips per batch")
parser.add_argument("--repeats", type=int, default=5, help="timed batches per variant")
args = parser.parse_args()
print(f"memory: {keep_freed_memory()}")                      # as train.py does on the CPU

sr, T = 22050, int(2.7 * 22050)
# The tutorial's chain: polarity 0.8, noise 0.3 (snr 0.001..0.005), gain 0.2, filters always,
# delay 0.5, reverb 0.3.
chain = build_chain(sr, p_polarity=0.8, p_noise=0.3, min_snr=0.001, max_snr=0.005, p_gain=0.2,
                    p_filter=1.0, p_delay=0.5, p_reverb=0.3)
x = 0.1 * torch.randn(args.batch, 1, T, device=args.device)
audio_seconds = args.batch * T / sr


def sync():
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn):
    fn()  # warm-up
    sync()
    t0 = time.perf_counter()
    for _ in range(args.repeats):
        fn()
    sync()
    return (time.perf_counter() - t0) / args.repeats


torch.manual_seed(0)
print(f"device={args.device} threads={torch.get_num_threads()} batch={args.batch} clip={T} samples @ {sr} Hz")
batched = timed(lambda: chain(x))
looped = timed(lambda: [chain(x[i]) for i in range(args.batch)])
print(f"tutorial chain, batched     : {audio_seconds / batched:8.1f} s of audio / s  ({batched * 1000:.0f} ms per batch)")
print(f"tutorial chain, per example : {audio_seconds / looped:8.1f} s of audio / s  ({looped * 1000:.0f} ms per batch)")
print(f"speed-up from batching      : {looped / batched:8.2f}x")
shared = build_chain(sr, p_polarity=0.8, p_noise=0.3, min_snr=0.001, max_snr=0.005, p_gain=0.2,
                     p_filter=1.0, p_delay=0.5, p_reverb=0.3, effect_reuse=4)
sh = timed(lambda: shared(x))
print(f"tutorial chain, effect_reuse 4: {audio_seconds / sh:6.1f} s of audio / s  ({sh * 1000:.0f} ms per batch; "
      f"each filter and room shared by ~4 clips, ssl_min/augment/shared.py)")
reverb = Reverb(sr)
rb = timed(lambda: reverb(x))
print(f"Reverb alone (p=1), batched : {audio_seconds / rb:8.1f} s of audio / s")
pitch = PitchShift(T, sr)
ps = timed(lambda: pitch(x))
print(f"PitchShift alone (p=1)      : {audio_seconds / ps:8.1f} s of audio / s  ({ps * 1000:.0f} ms per batch)")
clmr = build_chain(sr, p_pitch=0.6, n_samples=T)                 # CLMR's chain, its pitch shift included
cl = timed(lambda: clmr(x))
print(f"CLMR chain (pitch 0.6)      : {audio_seconds / cl:8.1f} s of audio / s  ({cl * 1000:.0f} ms per batch)")

"""Training speed of SampleCNN on this machine, side by side in one run: CLMR's formulation (the
model file's module stack, `conv="reference"`, nn.Conv1d in fp32: the yardstick) against the fast
formulation of the same weights (`conv="fast"`, ssl_min/models/fast.py), the ratio, the machine's matmul peak in both precisions, and the share of a
step that the preset's augmentation chain takes.

    python bench/train.py [--models clmr,demo,cpu] [--steps 5] [--batch 0] [--device cuda]

A step is what train.py does per batch: forward of both views, NT-Xent, backward, Adam. The
augmentation chain (the preset's, on the batch's device) is timed apart and reported as its share
of augmentation + step. The rows (and the chain) take turns, one step each per round, and each
reports its median: these CPUs drift by up to 30 % within minutes, and rows timed one after the
other compared the drift, not the formulations. FLOPs are counted exactly for the convolutions
and linear layers (2 x multiply-adds of a forward; a step = 3 forwards). BatchNorm, ReLU and pooling are memory-bound and
not counted, so the fraction of peak is a lower bound on the matmul efficiency.

The bar this is held to: ours >= 3x CLMR's formulation at >= 25 % of the machine's best
matmul peak; on a CPU without native bf16 (AVX2 only) the reference already runs its convolutions
near half of the fp32 peak, and the bar is >= 1.5x. The script prints which case it is in.
"""
import argparse
import os
import subprocess
import sys
import time
from contextlib import nullcontext

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ssl_min.augment import chain_for  # noqa: E402
from ssl_min.config import PRESETS, Config, resolve  # noqa: E402
from ssl_min.runtime.cpu_memory import keep_freed_memory  # noqa: E402
from ssl_min.objectives import NTXent  # noqa: E402
from ssl_min.models import build_model  # noqa: E402
from ssl_min.runtime.precision import native_bf16  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_name  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--device", default="cpu", help="cpu or cuda")
parser.add_argument("--steps", type=int, default=5,
                    help="timed steps per row, the rows taking turns (after 1 warm-up step each); the median is reported")
parser.add_argument("--batch", type=int, default=0, help="pairs per step (0: each preset's batch size)")
parser.add_argument("--models", default="clmr,demo,cpu", help="comma-separated presets to time")
parser.add_argument("--as_clmr_runs", action="store_true", help="internal: time only CLMR's formulation of "
                    "the one model in --models, with glibc's allocator untouched (a child process of this "
                    "script: once mallopt has been called, glibc's adaptive defaults cannot be restored)")
args = parser.parse_args()
device = torch.device(args.device)
allocator = ("untouched" if args.as_clmr_runs else keep_freed_memory()) if device.type == "cpu" else "CUDA caching allocator"


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(dtype, n=2048, reps=10, trials=3):
    """The best of `trials` timings of `reps` n x n products, GFLOP/s."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(trials):
        sync()
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 * reps / best / 1e9


def forward_flops(model, x):
    """Exact multiply-add count of the nn.Conv1d and nn.Linear calls in one forward of `model` (the
    reference: ours runs its convolutions as functions, which hooks do not see), x 2."""
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.Conv1d):
            total += 2 * out.numel() * (m.in_channels // m.groups) * m.kernel_size[0]
        elif isinstance(m, nn.Linear):
            total += 2 * out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Linear))]
    with torch.no_grad():
        model(x[:2])
    for h in handles:
        h.remove()
    return total * x.shape[0] // 2


def step_fn(model, x, criterion, precision):
    """One training step of `model` on x (its own Adam), as a function to time."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    ctx = nullcontext() if precision == "fp32" else torch.autocast(device.type, dtype=dtype)

    def step():
        with ctx:
            loss = criterion(*model(x).chunk(2))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def seconds_per_step(steps):
    """steps: {label: step function} -> {label: median seconds}. After one warm-up step each, the
    rows take turns, one step each per round, so a drift of the machine's speed (this project's
    CPUs drift by up to 30 % within minutes) hits every row alike."""
    times = {label: [] for label in steps}
    for step in steps.values():
        step()
    for _ in range(args.steps):
        for label, step in steps.items():
            sync()
            t0 = time.perf_counter()
            step()
            sync()
            times[label].append(time.perf_counter() - t0)
    return {label: sorted(t)[len(t) // 2] for label, t in times.items()}


bf16_ok = native_bf16(device)
if not args.as_clmr_runs:
    cap = torch.backends.cpu.get_cpu_capability() if device.type == "cpu" else "cuda"
    peak = {"fp32": matmul_peak(torch.float32)}
    if bf16_ok:
        peak["bf16"] = matmul_peak(torch.bfloat16)
    best = max(peak.values())
    bar = 3.0 if bf16_ok else 1.5
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"{cpu_name()}, {torch.get_num_threads()} threads"
    print(f"{where}; torch {torch.__version__}, CPU capability {cap}, native bf16: {'yes' if bf16_ok else 'no (emulated: bf16 rows skipped)'}")
    print(f"memory: {allocator}")
    print("matmul peak (2048^2): " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items())
          + f"; the bar here: ours >= {bar:g}x CLMR's formulation, >= 25 % of {best:.0f} GFLOP/s")
    print("rows: the median step of rows taking turns. vs CLMR: against CLMR's formulation in this process (same\n"
          "allocator); vs default: against it in a child process with glibc's allocator untouched, as CLMR's own\n"
          "code runs (ssl_min/runtime/cpu_memory.py)")
    print(f"{'model':<6}{'batch':>6}  {'formulation':<30}{'clips/s':>9}{'GFLOP/s':>9}{'% peak':>8}{'vs CLMR':>9}"
          f"{'vs default':>11}{'aug share':>11}")
chains = []
for name in args.models.split(","):
    # the preset's shapes; precision fixed, as this bench times each precision itself (no start-up timing)
    cfg = resolve(Config(**{**PRESETS[name], "data": "-", "device": device.type, "precision": "fp32", "conv": "fast"}))
    batch = args.batch or cfg.batch_size
    torch.manual_seed(0)
    ours = build_model(cfg.n_blocks, cfg.width, cfg.pool, cfg.proj_hidden, cfg.proj_dim, conv="fast").to(device)
    ref = build_model(cfg.n_blocks, cfg.width, cfg.pool, cfg.proj_hidden, cfg.proj_dim, conv="reference")
    ref.load_state_dict(ours.state_dict())         # the same weights in both formulations
    ref.to(device)
    x = torch.randn(2 * batch, 1, cfg.chunk_samples, device=device)
    flops = 3 * forward_flops(ref, x)
    chain = chain_for(cfg)
    gen = torch.Generator(device).manual_seed(0)
    criterion = NTXent(cfg.temperature)
    rows = [("CLMR's (Conv1d) fp32", ref, "fp32"), ("ssl_min (channels-last) fp32", ours, "fp32")]
    rows += [("ssl_min (channels-last) bf16", ours, "bf16")] if bf16_ok else []
    if args.as_clmr_runs:
        print(seconds_per_step({"ref": step_fn(ref, x, criterion, "fp32")})["ref"])
        continue
    if device.type == "cpu":            # CLMR's code as it runs: glibc's allocator as it comes
        child = subprocess.run([sys.executable, __file__, "--as_clmr_runs", "--models", name, "--steps",
                                str(args.steps), "--batch", str(batch)], capture_output=True, text=True)
        if child.returncode != 0:
            raise SystemExit(f"the child timing CLMR's code as it runs failed:\n{child.stderr[-3000:]}")
        untuned = float(child.stdout.split()[-1])
    timed = seconds_per_step({"augmentation": lambda: chain(x, generator=gen),
                              **{label: step_fn(model, x, criterion, precision) for label, model, precision in rows}})
    aug = timed["augmentation"]
    base = timed[rows[0][0]]
    for label, _, _ in rows:
        dt = timed[label]
        versus = f"{untuned / dt:>10.2f}x" if device.type == "cpu" else f"{'-':>11}"
        print(f"{name:<6}{batch:>6}  {label:<30}{2 * batch / dt:>9.1f}{flops / dt / 1e9:>9.1f}"
              f"{100 * flops / dt / 1e9 / best:>7.0f}%{base / dt:>8.2f}x{versus}{100 * aug / (aug + dt):>10.1f}%",
              flush=True)
    chains.append(f"{name} {aug * 1e3:.1f} ms (effect_reuse {cfg.effect_reuse})")
if not args.as_clmr_runs:
    print(f"augmentation, the preset's chain as train.py builds it, per batch: {', '.join(chains)}; effect_reuse r:"
          f" each filter and reverb setting shared by ~r clips (ssl_min/augment/shared.py)")

"""Training throughput of SampleCNN on this machine: clips/s for the clmr and demo models in fp32
and bf16, and the achieved GFLOP/s as a fraction of this machine's matmul peak measured in the
same run (so the figures are comparable across machines).

    python bench/train.py [--device cuda] [--steps 5]

FLOPs are counted exactly for the convolutions and linear layers (2 * MACs of a forward; a training
step is counted as 3 forwards: one forward, two for the backward). BatchNorm, ReLU and pooling are
memory-bound and not counted, so the fraction of peak is a lower bound on matmul efficiency.
"""
import argparse
import os
import sys
import time
from contextlib import nullcontext

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ssl_min.loss import NTXent  # noqa: E402
from ssl_min.model import build_model  # noqa: E402
from ssl_min.config import PRESETS, Config, resolve  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--device", default="cpu", help="cpu or cuda")
parser.add_argument("--steps", type=int, default=4, help="timed steps per setting (after 1 warm-up)")
parser.add_argument("--batch", type=int, default=0, help="pairs per step (0: the preset's batch size)")
parser.add_argument("--compile", action="store_true", help="also time torch.compile'd models (minutes to compile on a CPU)")
parser.add_argument("--models", default="clmr,demo", help="comma-separated presets to time")
args = parser.parse_args()
device = torch.device(args.device)


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(dtype, n=2048, reps=10):
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def forward_flops(model, x):
    """Exact multiply-add count of Conv1d and Linear layers in one forward, x 2."""
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.Conv1d):
            total += 2 * out.numel() * (m.in_channels // m.groups) * m.kernel_size[0]
        elif isinstance(m, nn.Linear):
            total += 2 * out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


def clips_per_second(cfg, batch, precision, compiled=False):
    torch.manual_seed(0)
    model = build_model(cfg.n_blocks, cfg.width, cfg.pool, cfg.proj_hidden, cfg.proj_dim).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    run = torch.compile(model) if compiled else model
    x = torch.randn(2 * batch, 1, cfg.chunk_samples, device=device)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    ctx = nullcontext() if precision == "fp32" else torch.autocast(device.type, dtype=dtype)
    criterion = NTXent(cfg.temperature)
    for i in range(args.steps + 1):
        if i == 1:
            sync()
            t0 = time.perf_counter()
        with ctx:
            loss = criterion(*run(x).chunk(2))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync()
    dt = (time.perf_counter() - t0) / args.steps
    return 2 * batch / dt, 3 * forward_flops(model, x) / dt / 1e9


peak = {p: matmul_peak(d) for p, d in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
print(f"device={device} threads={torch.get_num_threads()}; matmul peak (2048^2): "
      f"fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s ({peak['bf16'] / peak['fp32']:.1f}x)")
print(f"{'model':<8}{'batch':>6}{'precision':>10}{'clips/s':>10}{'GFLOP/s':>10}{'% fp32 peak':>13}{'% own peak':>12}")
for name in args.models.split(","):
    cfg = resolve(Config(**{**PRESETS[name], "data": "-"}))
    batch = args.batch or cfg.batch_size
    for precision, compiled in [("fp32", False), ("bf16", False)] + [("bf16", True)] * args.compile:
        cps, gflops = clips_per_second(cfg, batch, precision, compiled)
        label = precision + (" compiled" if compiled else "")
        print(f"{name:<8}{batch:>6}{label:>10}{cps:>10.1f}{gflops:>10.1f}"
              f"{100 * gflops / peak['fp32']:>12.0f}%{100 * gflops / peak[precision]:>11.0f}%")

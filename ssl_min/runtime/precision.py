"""precision="auto": the precision this machine trains fastest in, measured rather than assumed.

On CUDA: bf16 where the GPU has it, else fp16 (no measurement). On a CPU, bf16 is either emulated
(AVX2 only: ~100x slower than fp32, never tried) or native (AMX, or AVX512-BF16), and native is
usually faster but not always: on one AVX512-BF16 machine without AMX, bf16 matrix products ran
slower than fp32. So where it is native, `auto` times the core of a training step — one of
SampleCNN's channels-last convolutions (ssl_min/models/conv.py), forward and backward, 64 -> 64 channels
over 8 clips of 2187 frames — in fp32 and under bf16 autocast, best of 3 after a warm-up each
(~0.1 s), and takes bf16 only if it is at least MARGIN times faster: a near tie keeps fp32, exact
and the same on every machine. The first answer on a machine is remembered (remembered.py), so
the same command gives the same numbers however loaded the CPU is later. Under torchrun the ranks would measure apart and could disagree, so
there a native bf16 is taken unmeasured (pass --precision to choose). The choice is a resolved
field of the saved config, so a resumed run keeps it.

    native_bf16(device)     -> does this device compute bf16 in hardware?
    auto_precision(device)  -> ("bf16" | "fp16" | "fp32", the reason in words)
"""
import os
import time
from contextlib import nullcontext

import torch

from ssl_min.models.conv import CL, conv1d_cl
from ssl_min.runtime.remembered import remembered

MARGIN = 1.2


def native_bf16(device="cpu") -> bool:
    """Does this device compute bf16 in hardware? CUDA: as torch says; CPU: AVX512-BF16 or AMX
    (otherwise bf16 is emulated, ~100x slower than fp32, so "auto" must not pick it)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def best_seconds(run, trials) -> float:
    """The best of `trials` timed calls of run(), after one warm-up call, in seconds (the minimum:
    what the machine can do, least disturbed by whatever else ran meanwhile)."""
    run()
    best = float("inf")
    for _ in range(trials):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def conv_step_seconds(bf16: bool, batch=8, channels=64, frames=2187, trials=3) -> float:
    """Best of `trials` forward + backward passes of one channels-last kernel-3 convolution on the
    CPU, in fp32 or under bf16 autocast (after one warm-up pass), in seconds."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, 1, frames, generator=g).contiguous(memory_format=CL).requires_grad_()
    w = (torch.randn(channels, channels, 3, generator=g) / 14).requires_grad_()
    b = torch.zeros(channels, requires_grad=True)
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext

    def step():
        with ctx():
            y = conv1d_cl(x, w, b)
        y.float().square().mean().backward()

    return best_seconds(step, trials)


def auto_precision(device) -> tuple[str, str]:
    """-> (precision, why) for precision="auto" on `device` ("cpu" or "cuda")."""
    if torch.device(device).type == "cuda":
        return ("bf16", "CUDA with bf16") if torch.cuda.is_bf16_supported() else ("fp16", "CUDA without bf16")
    if not native_bf16("cpu"):
        return "fp32", "this CPU has no native bf16 (emulated: ~100x slower)"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return "bf16", "native bf16; not measured under torchrun (the ranks must agree)"
    def measure():
        fp32, bf16 = conv_step_seconds(False), conv_step_seconds(True)
        pick = "bf16" if fp32 >= MARGIN * bf16 else "fp32"
        return pick, (f"native bf16; a convolution's forward + backward took {1e3 * bf16:.1f} ms in bf16, "
                      f"{1e3 * fp32:.1f} ms in fp32 (bf16 needs {MARGIN}x)")

    return remembered({"choice": "precision"}, measure)

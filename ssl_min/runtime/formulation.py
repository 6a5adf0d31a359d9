"""`--conv auto`: CLMR's module stack or the fast formulation, whichever runs faster here, measured.

The fast formulation (ssl_min/models/fast.py) computes the same function as CLMR's nn.Conv1d /
BatchNorm1d / ReLU / MaxPool1d stack, with the convolutions channels-last and the stem as one
matrix product. It was written for, and measured on, CPUs; on CUDA, cuDNN runs the plain stack and
the fast path was never measured there, so CUDA takes the reference unmeasured. On a CPU, `auto`
times the encoder itself at the run's shapes, both ways with the same weights (a training step:
forward and backward under the run's precision; inference: forward only, no gradients), best of 5
after a warm-up each, and takes the fast one only if it is at least MARGIN times faster: a near
tie keeps the reference, the one a reader meets first. The first answer on a machine is remembered
(remembered.py): a timing flips under load, and the same command must give the same numbers. Under torchrun the ranks would measure
apart and could disagree, so there a CPU takes the fast one unmeasured (pass --conv to choose).

    choose_conv(device, arch, chunk, train=True, dtype=None) -> ("reference" | "fast", the reason in words)
    resolve_conv(conv, device, arch, chunk, train=False)   -> (the formulation to run, a line for the log)
"""
import copy
import os
from contextlib import nullcontext

import torch

from ssl_min.models.samplecnn import SampleCNN
from ssl_min.runtime.precision import best_seconds
from ssl_min.runtime.remembered import remembered

MARGIN = 1.1
SAMPLES_PER_TRIAL = 2 ** 18          # clips per timed pass: this many samples, 2 to 64 clips


def encoder_seconds(encoder, x, train, dtype=None, trials=5) -> float:
    """Best of `trials` passes of `encoder` on x (after one warm-up pass), in seconds: forward and
    backward in train mode when `train`, else a forward in eval mode without gradients."""
    encoder.train(train)
    ctx = (lambda: torch.autocast(x.device.type, dtype=dtype)) if dtype not in (None, torch.float32) else nullcontext

    def step():
        if train:
            with ctx():
                h = encoder(x)
            h.float().square().mean().backward()
        else:
            with torch.no_grad(), ctx():
                encoder(x)

    return best_seconds(step, trials)


def choose_conv(device, arch, chunk, train=True, dtype=None) -> tuple[str, str]:
    """arch: (n_blocks, width, pool), chunk: samples per clip -> (conv, why) for --conv auto."""
    if torch.device(device).type == "cuda":
        return "reference", "CUDA: cuDNN runs CLMR's module stack (the fast formulation is measured on CPUs only)"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return "fast", "a CPU; not measured under torchrun (the ranks must agree)"
    batch = max(2, min(64, SAMPLES_PER_TRIAL // chunk))
    what = "forward + backward" if train else "forward"
    question = {"choice": "conv", "arch": list(arch), "chunk": chunk, "train": train, "dtype": str(dtype)}
    return remembered(question, lambda: measure_conv(arch, chunk, batch, train, dtype, what))


def measure_conv(arch, chunk, batch, train, dtype, what):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, chunk, generator=g)
    with torch.random.fork_rng():                     # the run's own random state is left as it was
        torch.manual_seed(0)
        reference = SampleCNN(*arch, conv="reference")
    fast = copy.deepcopy(reference)
    fast.conv = "fast"
    seconds = {name: encoder_seconds(m, x, train, dtype) for name, m in (("reference", reference), ("fast", fast))}
    pick = "fast" if seconds["reference"] >= MARGIN * seconds["fast"] else "reference"
    return pick, (f"{batch} clips of {chunk} samples, {what}: reference {1e3 * seconds['reference']:.1f} ms, "
                  f"fast {1e3 * seconds['fast']:.1f} ms (fast needs {MARGIN}x)")


def resolve_conv(conv, device, arch, chunk, train=False, dtype=None) -> tuple[str, str]:
    """conv: "auto", "reference" or "fast" -> (the formulation to run, the log's line saying which and why)."""
    if conv != "auto":
        return conv, f"conv {conv}: as set (--conv, or the config of the run resumed), not measured"
    conv, why = choose_conv(device, arch, chunk, train, dtype)
    return conv, f"conv auto -> {conv}: {why}"

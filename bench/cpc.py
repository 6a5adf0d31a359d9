"""What CPC's choices cost: one training step (forward + backward) at the demo's scale, side by side.

    python bench/cpc.py

Rows, each the best of a few repeats, interleaved so that the machine's drift hits them alike:
* SimCLR, the demo preset's step (256 chunks of 6561 samples, 7 blocks, projector, NT-Xent);
* CPC as shipped (128 chunks of 64 frames, 4 blocks, GRU 256, K 12; negatives: the track's other
  frames and the batch's tracks at t+k, ssl_min/objectives/cpc.py);
* CPC with every frame of the batch as a candidate ((N T')^2 D per offset), the alternative;
* CPC with 128-frame chunks (the paper's length) and with a GRU of 128.
"""
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.machine import cpu_name  # noqa: E402
from ssl_min.models import build_model  # noqa: E402
from ssl_min.objectives import CPC, SimCLR  # noqa: E402
from ssl_min.runtime.formulation import resolve_conv  # noqa: E402


def every_frame_loss(z, preds, ids=None):
    """The alternative: every frame of the batch is a candidate for every prediction."""
    n, frames, d = z.shape
    flat = z.reshape(-1, d)                                           # (N T', D)
    losses = []
    for k in range(1, preds.shape[2] + 1):
        p = preds[:, :frames - k, k - 1].reshape(-1, d)               # (N (T'-k), D)
        target = (torch.arange(n)[:, None] * frames + torch.arange(k, frames)[None, :]).flatten()
        losses.append(F.cross_entropy(p @ flat.T, target))
    return torch.stack(losses).mean()


class EveryFrame(CPC):
    def forward(self, model, x, ids=None, groups=1):
        z = model(x).transpose(1, 2)
        return every_frame_loss(z, self.run(z)[1], ids)


def setup(kind):
    torch.manual_seed(0)
    if kind == "simclr":
        model, chunk, batch = build_model(7, 0.25, "flatten", 512, 64, "fast", "simclr"), 6561, 256
        objective = SimCLR(0.2)
    else:
        frames = 128 if kind == "cpc 128 frames" else 64
        context = 128 if kind == "cpc context 128" else 256
        model, chunk, batch = build_model(4, 0.25, "mean", conv="fast", objective="cpc"), 243 * frames, 128
        objective = (EveryFrame if kind == "cpc, every frame a candidate" else CPC)(model.encoder.out_dim, context, 12)
    model.encoder.conv = resolve_conv("auto", torch.device("cpu"), (model.encoder.n_blocks, 0.25, model.encoder.pool),
                                      chunk, train=True)[0]
    params = [*model.parameters(), *objective.trainable()]
    x = torch.randn(batch, 1, chunk) * 0.1
    ids = torch.arange(batch // 2 if kind == "simclr" else batch)

    def step():
        loss = objective(model, x, ids)
        grads = torch.autograd.grad(loss, params)
        return loss, grads
    return step


def main():
    kinds = ["simclr", "cpc", "cpc, every frame a candidate", "cpc 128 frames", "cpc context 128"]
    steps = {k: setup(k) for k in kinds}
    best = {k: float("inf") for k in kinds}
    for _ in range(3):
        for k in kinds:
            steps[k]()                                                # warm
            t = time.perf_counter()
            steps[k]()
            best[k] = min(best[k], time.perf_counter() - t)
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} threads, fp32")
    print("| step | seconds |\n| --- | --- |")
    for k in kinds:
        print(f"| {k} | {best[k]:.3f} |")


if __name__ == "__main__":
    main()

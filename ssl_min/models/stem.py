"""SampleCNN's stem, fast: a strided 1-channel convolution is a matrix product, and the BatchNorm
after it can be folded into that product, statistics included.

CLMR's stem is Conv1d(1, C, kernel 3, stride 3) + BatchNorm + ReLU. With stride = kernel the
convolution reads non-overlapping frames of 3 samples, so it is one product of (B*L, 3) frames with
a (3, C) weight, time-major (channels-last) for free (`strided_stem`).

Its BatchNorm, the widest in the network (C channels at a third of the audio rate), needs no pass
over the C-channel output either. Each output channel is y_c = f . w_c + b_c over the frames f, so
its batch statistics follow from the frames' own mean m (3 numbers) and covariance S (3 x 3):

    mean_c = m . w_c + b_c        var_c = w_c^T S w_c       (biased, as BatchNorm normalises)

and BatchNorm's output gamma_c (y_c - mean_c) / sqrt(var_c + eps) + beta_c is the same product with
the weight and bias rescaled (`stem_bn_relu`):

    w'_c = w_c * gamma_c / sqrt(var_c + eps)        b'_c = beta_c + (b_c - mean_c) * gamma_c / sqrt(var_c + eps)

Autograd differentiates those few numbers (m and S depend on the input only), so the gradients are
BatchNorm's own, the statistics' part included; the running statistics move exactly as
nn.BatchNorm1d moves them (momentum, unbiased variance); in eval mode the running statistics
rescale instead. The small sums run in float64 and the product in the autocast dtype. What it saves:
BatchNorm's forward and backward over the largest activation of the step (bench/train.py; bench/performance_log.md).
"""
import torch
import torch.nn as nn

from ssl_min.models.conv import apply_in_autocast_dtype


class _StemProduct(torch.autograd.Function):
    """frames (B, L, k) @ w (k, C) + bias -> (B*L, C) rows, computed in `dtype` (autocast's; None:
    the tensors' own). Autograd's own backward of that product forms the weight's gradient as one
    (k, B*L) x (B*L, C) product with a reduction of B*L (~420k rows for the cpu preset): the
    libraries run that shape slowly (measured on the Zen 5 CPU: 3.4 ms in bf16, 8.9 in fp32, whose
    single long sum also rounded 15-45x worse than sums per clip). Here: one (k + 1, L) x (L, C)
    product per clip, with a row of ones for the bias, and the B results summed in float32."""

    @staticmethod
    def forward(ctx, frames, w, bias, dtype):
        cast = (lambda t: t.to(dtype)) if dtype is not None else (lambda t: t)
        f, wd = cast(frames), cast(w)
        B, L, k = f.shape
        flat = f.reshape(B * L, k)
        rows = flat @ wd if bias is None else torch.addmm(cast(bias), flat, wd)
        ctx.save_for_backward(f, wd)
        ctx.dtypes = (frames.dtype, w.dtype, None if bias is None else bias.dtype)
        return rows

    @staticmethod
    def backward(ctx, g):
        (f, wd), (f_dtype, w_dtype, b_dtype) = ctx.saved_tensors, ctx.dtypes
        B, L, k = f.shape
        g = g.to(f.dtype).reshape(B, L, -1)                            # (B, L, C)
        gf = gw = gb = None
        if ctx.needs_input_grad[0]:
            gf = (g @ wd.T).to(f_dtype)                                 # (B, L, k)
        want_gb = b_dtype is not None and ctx.needs_input_grad[2]
        if ctx.needs_input_grad[1] or want_gb:
            lhs = torch.cat([f, f.new_ones(B, L, 1)], 2) if want_gb else f      # (B, L, k [+ 1])
            acc = torch.float64 if f.dtype == torch.float64 else torch.float32
            total = torch.bmm(lhs.transpose(1, 2), g).sum(0, dtype=acc)        # (k [+ 1], C)
            gw = total[:k].to(w_dtype) if ctx.needs_input_grad[1] else None
            gb = total[k].to(b_dtype) if want_gb else None
        return gf, gw, gb, None


def strided_stem(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A 1-channel Conv1d whose stride equals its kernel k (CLMR's stem, k = 3) is a matrix product
    on non-overlapping frames of k samples: x (B, 1, 1, T) -> (B, C, 1, T // k) channels-last."""
    k = weight.shape[-1]
    frames = _frames(x, k)                                      # (B, L, k)
    B, L = frames.shape[:2]
    w = weight.view(-1, k).T                                    # (k, C)
    rows = apply_in_autocast_dtype(_StemProduct, frames, w, bias)   # (B*L, C), time-major
    return rows.view(B, 1, L, -1).permute(0, 3, 1, 2)           # (B, C, 1, L), channels-last


def _frames(x: torch.Tensor, k: int) -> torch.Tensor:
    """x (B, 1, 1, T) -> (B, L, k) non-overlapping frames, L = T // k (a view when T % k == 0)."""
    B, L = x.shape[0], x.shape[-1] // k
    return x.reshape(B, -1)[:, :L * k].reshape(B, L, k)


def folded_weight_and_bias(frames: torch.Tensor, conv: nn.Conv1d, bn: nn.BatchNorm1d):
    """frames (B, L, k), the stem's conv and the BatchNorm after it -> (w' (k, C), b' (C,)) in the
    parameters' dtype, such that frames @ w' + b' is BatchNorm(conv(x)). Uses the batch's
    statistics in training (and updates bn's running ones, as BatchNorm does), the running ones
    in eval mode."""
    k = conv.weight.shape[-1]
    w = conv.weight.view(-1, k).T.double()                                 # (k, C)
    b = conv.bias.double() if conv.bias is not None else w.new_zeros(w.shape[1])
    gamma = bn.weight.double() if bn.weight is not None else 1.0
    beta = bn.bias.double() if bn.bias is not None else 0.0
    if bn.training or bn.running_mean is None:
        f = frames.double()
        n = f.shape[0] * f.shape[1]
        m = f.sum((0, 1)) / n                                              # (k,)
        fc = f - m
        S = torch.bmm(fc.transpose(1, 2), fc).sum(0) / n                  # (k, k), centred: no cancellation
        mean = m @ w + b                                                   # (C,)
        var = ((S @ w) * w).sum(0)                                         # (C,), w_c^T S w_c
        if bn.training and bn.track_running_stats:
            with torch.no_grad():
                bn.num_batches_tracked.add_(1)
                f_avg = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
                bn.running_mean.mul_(1 - f_avg).add_(f_avg * mean.to(bn.running_mean.dtype))
                bn.running_var.mul_(1 - f_avg).add_(f_avg * (var * n / max(n - 1, 1)).to(bn.running_var.dtype))
    else:
        mean, var = bn.running_mean.double(), bn.running_var.double()
    scale = gamma * torch.rsqrt(var + bn.eps)                              # (C,)
    return (w * scale).to(conv.weight.dtype), (beta + (b - mean) * scale).to(conv.weight.dtype)


def stem_bn_relu(x: torch.Tensor, conv: nn.Conv1d, bn: nn.BatchNorm1d) -> torch.Tensor:
    """ReLU(BatchNorm(conv(x))) for the strided stem, BatchNorm folded into the product:
    x (B, 1, 1, T) -> (B, C, 1, T // k) channels-last."""
    k = conv.weight.shape[-1]
    frames = _frames(x, k)                                                 # (B, L, k)
    with torch.autocast(x.device.type, enabled=False):
        w, b = folded_weight_and_bias(frames, conv, bn)
    rows = apply_in_autocast_dtype(_StemProduct, frames, w, b)             # (B*L, C)
    rows = torch.relu_(rows)              # in place on the product's own output, before any view
    return rows.view(x.shape[0], 1, frames.shape[1], -1).permute(0, 3, 1, 2)

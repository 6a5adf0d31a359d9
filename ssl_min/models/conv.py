"""SampleCNN's convolutions, fast: Conv1d(k, 'same' padding) run as a channels-last Conv2d.

SampleCNN spends most of a step in kernel-3 convolutions over long sequences (CLMR's first block:
128 -> 128 channels over 19683 frames). Stored (B, C, T), as nn.Conv1d keeps them, oneDNN
runs them at about half of what the same arithmetic reaches as a matrix product. Stored
time-major instead, a (B, C, 1, T) tensor in channels-last memory, i.e. (B*T, C) rows, they
are matrix products in disguise:

    forward        y = conv2d(x, w)                    oneDNN, channels-last
    grad of x      gx = conv2d(g, flip(w)^T)           the same kernel, weights flipped in time
    grad of w      gw[:, :, j] = sum_t g[t]^T x[t+j-p] three (k) matrix products of the (B*T, C)
                                                       rows, offset by j - p rows

The weight gradient is where channels-last oneDNN is slow (measured: ~50 GFLOP/s against ~135
for the products on 2 AVX2 cores, CLMR's first block). Offsetting the flattened rows pairs the
last frames of clip b with the first frames of clip b+1 at the seams: those few wrong pairs are
subtracted again (a (B-1, C) product per offset) instead of padding every clip.

`conv1d_cl(x, weight, bias)`: x (B, C_in, 1, T) channels-last; weight (C_out, C_in, k), nn.Conv1d's
own parameter, odd k, stride 1, padding k // 2 -> (B, C_out, 1, T) channels-last. Numerically
equal to F.conv1d (fp32 to float rounding; tests/test_conv.py checks outputs and gradients).
Under autocast the inputs are cast to the autocast dtype once, as autocast casts a convolution, but
inside the autograd function, and the weight gradient of a bf16/fp16 convolution comes from the
library's own kernel (`library_grads`: oneDNN sums in float32 and rounds once; on a CPU with
native bf16 it was 1.1-2.5x faster than the products, measured per layer size); float32 and float64
use the products. (Our products' bf16 block sums, added up in bf16, were 5x further from exact than
oneDNN's and cost the encoder on real music: a low-precision gradient must be summed in float32.)
"""
import torch
import torch.nn.functional as F

CL = torch.channels_last


def as_rows(t: torch.Tensor) -> torch.Tensor:
    """(B, C, 1, T) channels-last -> (B*T, C) view of the same memory."""
    B, C, _, T = t.shape
    return t.permute(0, 2, 3, 1).reshape(B * T, C)


def weight_grad(x: torch.Tensor, g: torch.Tensor, k: int, block: int = 8192) -> torch.Tensor:
    """x (B, C_in, 1, T), g (B, C_out, 1, T), both channels-last -> (C_out, C_in, k), the gradient
    of a 'same'-padded stride-1 convolution's weight, as matrix products over the flat rows.

    The rows go in blocks of `block`: each block of g meets its k offset blocks of x while they
    are in cache (measured: ~130 against ~75-115 GFLOP/s for k products over all 315k rows)."""
    B, _, _, T = x.shape
    X, G = as_rows(x), as_rows(g)                            # (N, C_in), (N, C_out), N = B*T
    N, p = X.shape[0], k // 2
    low = X.dtype in (torch.bfloat16, torch.float16)         # sums of many blocks: in float32
    taps = [torch.zeros(G.shape[1], X.shape[1], dtype=torch.float32 if low else X.dtype, device=X.device)
            for _ in range(k)]
    for start in range(0, N, block):
        stop = min(start + block, N)
        for j in range(k):
            s = j - p                                        # output row t meets input row t + s
            a, b = max(start, -s), min(stop, N - s)
            if a < b and low:                                # one block's product rounded once
                taps[j] += (G[a:b].T @ X[a + s:b + s]).float()
            elif a < b:
                taps[j].addmm_(G[a:b].T, X[a + s:b + s])
    Xb, Gb = X.view(B, T, -1), G.view(B, T, -1)
    for j in range(k):                                       # undo the pairs across clip seams:
        s = j - p                                            # the last frames of clip b with the
        for i in range(abs(s)):                              # first frames of clip b+1 (s > 0), or back
            if s > 0:
                taps[j] -= (Gb[:-1, T - s + i].T @ Xb[1:, i]).to(taps[j].dtype)
            else:
                taps[j] -= (Gb[1:, i].T @ Xb[:-1, T + s + i]).to(taps[j].dtype)
    return torch.stack(taps, dim=-1)                         # (C_out, C_in, k), float32 for bf16/fp16 x


def library_grads(x: torch.Tensor, g: torch.Tensor, weight: torch.Tensor, bias: bool):
    """The same weight gradient from the library's own convolution backward (oneDNN on the CPU;
    cuDNN on CUDA, not measured here), and the bias's from the same pass over g if `bias`:
    x (B, C_in, 1, T), g (B, C_out, 1, T) channels-last, weight (C_out, C_in, k) -> ((C_out, C_in, k),
    (C_out,) or None), in x's dtype. In bf16 it sums in float32 and rounds once, and on a CPU with
    native bf16 it beat the products above at every SampleCNN size measured (bench/train.py; bench/performance_log.md)."""
    k = weight.shape[-1]
    _, gw, gb = torch.ops.aten.convolution_backward(
        g, x, weight.unsqueeze(2), [weight.shape[0]] if bias else None, [1, 1], [0, k // 2], [1, 1],
        False, [0, 0], 1, [False, True, bias])
    return gw.squeeze(2), gb


class _Conv1dCL(torch.autograd.Function):
    """The convolution computed in `dtype` (autocast's; None: the tensors' own), the gradients
    returned in each input's own dtype: a float32 weight under bf16 autocast gets the library's
    float32 sum rounded once (library_grads), never sums of bf16-rounded block sums."""

    @staticmethod
    def forward(ctx, x, weight, bias, dtype):
        k = weight.shape[-1]
        cast = (lambda t: t.to(dtype)) if dtype is not None else (lambda t: t)
        xd, wd = cast(x), cast(weight)
        y = F.conv2d(xd, wd.unsqueeze(2), None if bias is None else cast(bias), padding=(0, k // 2))
        ctx.save_for_backward(xd, wd)                         # intermediates under autocast (no double backward)
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        return y.contiguous(memory_format=CL)

    @staticmethod
    def backward(ctx, g):
        (x, weight), (x_dtype, w_dtype, b_dtype) = ctx.saved_tensors, ctx.dtypes
        k = weight.shape[-1]
        g = g.to(x.dtype).contiguous(memory_format=CL)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            flipped = weight.transpose(0, 1).flip(-1).unsqueeze(2)   # (C_in, C_out, 1, k)
            gx = F.conv2d(g, flipped.contiguous(), padding=(0, k // 2)).contiguous(memory_format=CL).to(x_dtype)
        want_gb = b_dtype is not None and ctx.needs_input_grad[2]
        if ctx.needs_input_grad[1] and x.dtype in (torch.bfloat16, torch.float16):
            gw, gb = library_grads(x, g, weight, want_gb)
            gw, gb = gw.to(w_dtype), None if gb is None else gb.to(b_dtype)
        elif ctx.needs_input_grad[1]:
            gw = weight_grad(x, g, k).to(w_dtype)
        if want_gb and gb is None:
            gb = as_rows(g).sum(0, dtype=torch.float32 if b_dtype != torch.float64 else b_dtype).to(b_dtype)
        return gx, gw, gb, None


def apply_in_autocast_dtype(function, x: torch.Tensor, *args):
    """function.apply(x, *args, dtype) for an autograd function whose last argument is the dtype to
    compute in: autocast's where it is on for x's device (with autocast off inside, so the function
    casts its inputs once, as autocast casts a convolution or a product), else None (the tensors' own)."""
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        with torch.autocast(device_type, enabled=False):
            return function.apply(x, *args, torch.get_autocast_dtype(device_type))
    return function.apply(x, *args, None)


def conv1d_cl(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (B, C_in, 1, T) channels-last, weight (C_out, C_in, k) -> (B, C_out, 1, T) channels-last."""
    if weight.shape[-1] % 2 != 1:
        raise ValueError(f"conv1d_cl needs an odd kernel ('same' padding), got {weight.shape[-1]}")
    return apply_in_autocast_dtype(_Conv1dCL, x, weight, bias)

"""SampleCNN's fast formulation: the same modules' parameters, the same function, fewer passes.

CLMR's module stack (ssl_min/models/samplecnn.py) runs nn.Conv1d / BatchNorm1d / ReLU / MaxPool1d
on (B, C, T) tensors. This layer runs those very modules' parameters on (B, C, 1, T) tensors in
channels-last memory, i.e. (B*T, C) rows, where the CPU's libraries run them faster:

* every kernel-3 convolution through conv1d_cl (ssl_min/models/conv.py): a channels-last Conv2d,
  its weight gradient as offset matrix products;
* the strided stem as one matrix product of 3-sample frames, its BatchNorm folded into the product
  (ssl_min/models/stem.py);
* each block max-pools before its ReLU: the two commute, max(relu(a), relu(b)) = relu(max(a, b)),
  so a third of the ReLU work; ReLU in place (BatchNorm keeps its input, not its output).

    fast_trunk(net, x)          x (B, 1, T) -> (B, C, 1, T') channels-last: what net(x) gives, (B, C, T')
    fast_block_outputs(net, x)  x (B, 1, T) -> the post-ReLU activations, as SampleCNN.block_outputs

Equal to the module stack to float rounding, outputs and every gradient (tests/test_conv.py,
tests/test_stem.py, in float64 to 1e-10); whether it is faster depends on the machine, so
`--conv auto` measures it (ssl_min/runtime/formulation.py).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ssl_min.models.conv import CL, conv1d_cl
from ssl_min.models.stem import stem_bn_relu, strided_stem


def batch_norm(m: nn.BatchNorm1d, h: torch.Tensor) -> torch.Tensor:
    """m(h) for a (B, C, 1, T) tensor, which nn.BatchNorm1d refuses (it checks for 2-D or 3-D
    input): the statistics are per channel either way. The same steps as nn.BatchNorm1d.forward:
    the running statistics move by `momentum`, or by a cumulative average when it is None."""
    factor = 0.0 if m.momentum is None else m.momentum
    if m.training and m.track_running_stats and m.num_batches_tracked is not None:
        m.num_batches_tracked.add_(1)
        factor = 1.0 / float(m.num_batches_tracked) if m.momentum is None else m.momentum
    use_batch = m.training or (m.running_mean is None and m.running_var is None)
    keep = not m.training or m.track_running_stats
    return F.batch_norm(h, m.running_mean if keep else None, m.running_var if keep else None,
                        m.weight, m.bias, use_batch, factor, m.eps)


def fast_trunk(net: nn.Sequential, x: torch.Tensor, outs: list | None = None) -> torch.Tensor:
    """x (B, 1, T) -> (B, C, 1, T') channels-last: net's modules, run as 2-D ops.
    outs: if a list, every post-ReLU activation is appended to it (fast_block_outputs)."""
    h = x.unsqueeze(2)                                      # (B, 1, 1, T): a 1-channel image row
    layers = list(net)
    skip = 0
    for i, m in enumerate(layers):
        if skip:
            skip -= 1
            continue
        if isinstance(m, nn.Conv1d):
            stem = m.kernel_size == m.stride and m.padding[0] == 0 and m.in_channels == 1
            if m.stride[0] == 1 and m.padding[0] == m.kernel_size[0] // 2:
                h = conv1d_cl(h, m.weight, m.bias)
            elif (stem and i + 2 < len(layers) and isinstance(layers[i + 1], nn.BatchNorm1d)
                  and isinstance(layers[i + 2], nn.ReLU)):
                h = stem_bn_relu(h, m, layers[i + 1])       # CLMR's stem, its BatchNorm folded in
                skip = 2
                if outs is not None:
                    outs.append(h)
            elif stem:
                h = strided_stem(h, m.weight, m.bias)       # frames of 3 samples
            else:
                h = F.conv2d(h, m.weight.unsqueeze(2), m.bias, stride=(1, m.stride[0]),
                             padding=(0, m.padding[0])).contiguous(memory_format=CL)
        elif isinstance(m, nn.ReLU):
            if i + 1 < len(layers) and isinstance(layers[i + 1], nn.MaxPool1d):
                continue                                    # pool first, then ReLU (they commute)
            h = torch.relu_(h)                              # in place: BatchNorm keeps its input, not its output
            if outs is not None:
                outs.append(h)
        elif isinstance(m, nn.MaxPool1d):
            h = torch.relu_(F.max_pool2d(h, (1, m.kernel_size), (1, m.stride)))
            if outs is not None:
                outs.append(h)
        elif isinstance(m, nn.BatchNorm1d):
            h = batch_norm(m, h)
        else:
            raise TypeError(f"the fast formulation does not know {type(m).__name__}")
    return h


def fast_block_outputs(net: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """x (B, 1, T) -> the post-ReLU activations (B, C_i, T_i), views of channels-last memory."""
    outs = []
    fast_trunk(net, x, outs)
    return [h.flatten(2) for h in outs]                     # (B, C, 1, T) -> (B, C, T)

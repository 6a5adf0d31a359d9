"""SampleCNN encoder (CLMR's exact architecture by default), the projection head, and the pair.

SampleCNN (Lee et al. 2017) learns straight from the raw waveform with tiny kernels: a strided
stem, then blocks of Conv1d(k=3) + BN + ReLU + MaxPool(3). Each block divides time by 3, so CLMR's
9 blocks take 3^10 = 59049 samples (2.68 s at 22050 Hz) down to a single frame of 512 channels.

    x: (B, 59049) or (B, 1, 59049)  ->  h: (B, 512)      encoder   (the representation)
    h: (B, 512)                     ->  z: (B, 64)       projector (only the contrastive loss sees z)

Knobs for small runs keep the same code path: `n_blocks` (input length 3^(n_blocks+1)),
`width` (channel multiplier) and `pool="mean"` (the DL101 tutorial's average over time, so any
input length works). This file does no I/O.

Two formulations of one network, one set of parameters (CLMR's shapes and state-dict keys):
`layout="reference"` runs `self.net` as written, nn.Conv1d on (B, C, T) tensors, CLMR's own code;
`layout="channels_last"` (the default) runs the same modules' parameters on (B, C, 1, T) tensors
in channels-last memory, the convolutions through ssl_min/conv.py, the stem as one matrix product
with its BatchNorm folded into it (ssl_min/stem.py), and each block max-pools before its ReLU (the
two commute: max(relu(a), relu(b)) = relu(max(a, b)), so a third of the ReLU work).
Same numbers to float rounding (tests/test_conv.py); the speed-up is measured by bench/train.py.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ssl_min.conv import CL, conv1d_cl
from ssl_min.stem import stem_bn_relu, strided_stem

# CLMR's channels: the stem's output, then the output of each of the 9 blocks.
CLMR_CHANNELS = (128, 128, 128, 256, 256, 256, 256, 256, 256, 512)


def channels(width: float) -> list[int]:
    """CLMR's channel counts times `width` -> [stem, block 1 .. block 9] (10 numbers; a model with
    n blocks uses the first n + 1, and its last conv maps block n's output to the last number)."""
    return [max(1, round(c * width)) for c in CLMR_CHANNELS]


class BatchNorm(nn.BatchNorm1d):
    """nn.BatchNorm1d (same parameters, buffers and keys) that also takes the channels-last
    (B, C, 1, T) tensors of the fast layout; statistics are per channel either way."""

    def _check_input_dim(self, input):
        if input.dim() not in (2, 3, 4):
            raise ValueError(f"expected 2D, 3D or 4D input, got {input.dim()}D")


def conv_bn_relu(c_in, c_out, stride=1, padding=1):
    return [nn.Conv1d(c_in, c_out, kernel_size=3, stride=stride, padding=padding),
            BatchNorm(c_out), nn.ReLU()]


class SampleCNN(nn.Module):
    """CLMR's SampleCNN without its classifier: waveform in, one vector per clip out.

    n_blocks: number of Conv-BN-ReLU-MaxPool(3) blocks (CLMR: 9); input length 3^(n_blocks+1)
              when pool="flatten".
    width:    multiplies every channel count (CLMR: 1.0). out_dim = round(512 * width).
    pool:     "flatten" (CLMR: the time axis must be 1 frame at the end) or "mean" (average
              over time, any input length >= 3^(n_blocks+1)).
    """

    def __init__(self, n_blocks: int = 9, width: float = 1.0, pool: str = "flatten",
                 layout: str = "channels_last"):
        super().__init__()
        if layout not in ("channels_last", "reference"):
            raise ValueError(f"layout must be 'channels_last' or 'reference', got {layout!r}")
        self.layout = layout
        if not 1 <= n_blocks <= 9:
            raise ValueError(f"n_blocks must be in 1..9, got {n_blocks}")
        if pool not in ("flatten", "mean"):
            raise ValueError(f"pool must be 'flatten' or 'mean', got {pool!r}")
        ch = channels(width)
        self.n_blocks, self.pool = n_blocks, pool
        self.input_samples = 3 ** (n_blocks + 1)  # the receptive field: one output frame
        self.out_dim = ch[-1]
        layers = conv_bn_relu(1, ch[0], stride=3, padding=0)  # (B, 1, T) -> (B, C0, T/3)
        for i in range(n_blocks):                               # each block: time / 3
            layers += conv_bn_relu(ch[i], ch[i + 1]) + [nn.MaxPool1d(3, stride=3)]
        layers += conv_bn_relu(ch[n_blocks], ch[-1])            # CLMR's last conv, no pooling
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T) or (B, 1, T) -> h: (B, out_dim)."""
        if x.dim() == 2:
            x = x.unsqueeze(1)
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"expected (B, T) or (B, 1, T) mono audio, got {tuple(x.shape)}")
        T = x.shape[-1]
        if self.pool == "flatten" and T != self.input_samples:
            raise ValueError(f"pool='flatten' needs exactly {self.input_samples} samples (one output "
                             f"frame), got {T}. Use pool='mean' for other lengths.")
        if T < self.input_samples:
            raise ValueError(f"need at least {self.input_samples} samples, got {T}")
        h = self.net(x) if self.layout == "reference" else self.forward_channels_last(x)  # (B, C, [1,] T')
        if self.pool == "mean":
            return h.flatten(2).mean(dim=-1)                    # (B, C), the tutorial's pooling
        return h.flatten(1)                                     # (B, C), T' == 1

    def block_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 1, T) -> the activations after every ReLU, in order: the stem's, each block's
        (after its pooling) and the last conv's, n_blocks + 2 tensors (B, C_i, T_i) (the last one
        is what forward() pools or flattens). What a layer-wise probe reads."""
        if x.dim() == 2:
            x = x.unsqueeze(1)
        outs = []
        if self.layout == "channels_last":
            self.forward_channels_last(x, outs)
            return [h.flatten(2) for h in outs]                 # (B, C, 1, T) -> (B, C, T), views
        h = x
        for i, m in enumerate(self.net):
            h = m(h)
            nxt = self.net[i + 1] if i + 1 < len(self.net) else None
            if isinstance(m, nn.MaxPool1d) or (isinstance(m, nn.ReLU) and not isinstance(nxt, nn.MaxPool1d)):
                outs.append(h)
        return outs

    def forward_channels_last(self, x: torch.Tensor, outs: list | None = None) -> torch.Tensor:
        """x: (B, 1, T) -> (B, C, 1, T') channels-last: self.net's modules, run as 2-D ops.
        outs: if a list, every post-ReLU activation is appended to it (block_outputs)."""
        h = x.unsqueeze(2)                                      # (B, 1, 1, T): a 1-channel image row
        layers = list(self.net)
        skip = 0
        for i, m in enumerate(layers):
            if skip:
                skip -= 1
                continue
            if isinstance(m, nn.Conv1d):
                stem = m.kernel_size == m.stride and m.padding[0] == 0 and m.in_channels == 1
                if m.stride[0] == 1 and m.padding[0] == m.kernel_size[0] // 2:
                    h = conv1d_cl(h, m.weight, m.bias)
                elif stem and i + 2 < len(layers) and isinstance(layers[i + 1], BatchNorm) and isinstance(layers[i + 2], nn.ReLU):
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
            else:                                               # BatchNorm
                h = m(h)
        return h


class Projector(nn.Module):
    """SimCLR/CLMR projection head: Linear - ReLU - Linear, no biases (as in CLMR).
    h: (B, in_dim) -> z: (B, out_dim)."""

    def __init__(self, in_dim: int = 512, hidden_dim: int = 512, out_dim: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim, bias=False), nn.ReLU(),
                                 nn.Linear(hidden_dim, out_dim, bias=False))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class ContrastiveModel(nn.Module):
    """Encoder + projector. forward returns z (for the loss); `encoder(x)` is the representation."""

    def __init__(self, encoder: SampleCNN, projector: Projector):
        super().__init__()
        self.encoder, self.projector = encoder, projector

    def forward(self, x: torch.Tensor, groups: int = 1) -> torch.Tensor:
        """x: (B, 1, T) -> z: (B, proj_dim). groups=2 runs the encoder on each half of the batch
        separately (CLMR's two views: BatchNorm statistics per view), inside one call, so that
        DDP sees one forward per backward."""
        h = torch.cat([self.encoder(part) for part in x.chunk(groups)]) if groups > 1 else self.encoder(x)
        return self.projector(h)


def build_model(n_blocks=9, width=1.0, pool="flatten", proj_hidden=512, proj_dim=64):
    """The one place both scripts build the network from config fields."""
    encoder = SampleCNN(n_blocks=n_blocks, width=width, pool=pool)
    return ContrastiveModel(encoder, Projector(encoder.out_dim, proj_hidden, proj_dim))

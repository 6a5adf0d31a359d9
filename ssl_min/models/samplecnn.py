"""SampleCNN, CLMR's encoder, as CLMR writes it; the projection head; the pair they form.

SampleCNN (Lee et al. 2017) learns straight from the raw waveform with tiny kernels: a strided
stem, then blocks of Conv1d(k=3) + BN + ReLU + MaxPool(3). Each block divides time by 3, so CLMR's
9 blocks take 3^10 = 59049 samples (2.68 s at 22050 Hz) down to a single frame of 512 channels.

    x: (B, 59049) or (B, 1, 59049)  ->  h: (B, 512)      encoder   (the representation)
    h: (B, 512)                     ->  z: (B, 64)       projector (only the contrastive loss sees z)

Knobs for small runs keep the same code path: `n_blocks` (input length 3^(n_blocks+1)),
`width` (channel multiplier) and `pool="mean"` (the DL101 tutorial's average over time, so any
input length works). This file does no I/O.

`conv="reference"` (the default) runs `self.net`, the module stack below, exactly as CLMR's code
does. `conv="fast"` runs the same modules' parameters through a faster formulation of the same
function (ssl_min/models/fast.py: channels-last convolutions, the stem as one matrix product with
its BatchNorm folded in); train.py and the probe choose it where it is measured faster
(`--conv auto`, ssl_min/runtime/formulation.py). Same parameters and state-dict keys either way.
"""
import torch
import torch.nn as nn

from ssl_min.models.fast import fast_block_outputs, fast_trunk

# CLMR's channels: the stem's output, then the output of each of the 9 blocks.
CLMR_CHANNELS = (128, 128, 128, 256, 256, 256, 256, 256, 256, 512)
CONVS = ("reference", "fast")


def channels(width: float) -> list[int]:
    """CLMR's channel counts times `width` -> [stem, block 1 .. block 9] (10 numbers; a model with
    n blocks uses the first n + 1, and its last conv maps block n's output to the last number)."""
    return [max(1, round(c * width)) for c in CLMR_CHANNELS]


def conv_bn_relu(c_in, c_out, stride=1, padding=1):
    return [nn.Conv1d(c_in, c_out, kernel_size=3, stride=stride, padding=padding),
            nn.BatchNorm1d(c_out), nn.ReLU()]


class SampleCNN(nn.Module):
    """CLMR's SampleCNN without its classifier: waveform in, one vector per clip out.

    n_blocks: number of Conv-BN-ReLU-MaxPool(3) blocks (CLMR: 9); input length 3^(n_blocks+1)
              when pool="flatten".
    width:    multiplies every channel count (CLMR: 1.0). out_dim = round(512 * width).
    pool:     "flatten" (CLMR: the time axis must be 1 frame at the end) or "mean" (average
              over time, any input length >= 3^(n_blocks+1)).
    conv:     "reference" (CLMR's module stack) or "fast" (models/fast.py); an attribute, so a
              built model can switch.
    """

    def __init__(self, n_blocks: int = 9, width: float = 1.0, pool: str = "flatten", conv: str = "reference"):
        super().__init__()
        if conv not in CONVS:
            raise ValueError(f"conv must be one of {CONVS}, got {conv!r}")
        if not 1 <= n_blocks <= 9:
            raise ValueError(f"n_blocks must be in 1..9, got {n_blocks}")
        if pool not in ("flatten", "mean"):
            raise ValueError(f"pool must be 'flatten' or 'mean', got {pool!r}")
        ch = channels(width)
        self.n_blocks, self.pool, self.conv = n_blocks, pool, conv
        self.input_samples = 3 ** (n_blocks + 1)  # the receptive field: one output frame
        self.out_dim = ch[-1]
        layers = conv_bn_relu(1, ch[0], stride=3, padding=0)  # (B, 1, T) -> (B, C0, T/3)
        for i in range(n_blocks):                               # each block: time / 3
            layers += conv_bn_relu(ch[i], ch[i + 1]) + [nn.MaxPool1d(3, stride=3)]
        layers += conv_bn_relu(ch[n_blocks], ch[-1])            # CLMR's last conv, no pooling
        self.net = nn.Sequential(*layers)

    def _check(self, x: torch.Tensor) -> torch.Tensor:
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
        return x

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T) or (B, 1, T) -> the last conv's output before any pooling, (B, out_dim, T')
        with T' = T // 3^(n_blocks+1): one frame per 3^(n_blocks+1) samples (CPC's z_t)."""
        x = self._check(x)
        h = self.net(x) if self.conv == "reference" else fast_trunk(self.net, x)   # (B, C, [1,] T')
        return h.flatten(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T) or (B, 1, T) -> h: (B, out_dim)."""
        h = self.frames(x)                                      # (B, C, T')
        if self.pool == "mean":
            return h.mean(dim=-1)                               # (B, C), the tutorial's pooling
        return h.flatten(1)                                     # (B, C), T' == 1

    def block_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 1, T) -> the activations after every ReLU, in order: the stem's, each block's
        (after its pooling) and the last conv's, n_blocks + 2 tensors (B, C_i, T_i) (the last one
        is what forward() pools or flattens). What a layer-wise probe reads."""
        x = self._check(x)
        if self.conv == "fast":
            return fast_block_outputs(self.net, x)
        outs, h = [], x
        for i, m in enumerate(self.net):
            h = m(h)
            nxt = self.net[i + 1] if i + 1 < len(self.net) else None
            if isinstance(m, nn.MaxPool1d) or (isinstance(m, nn.ReLU) and not isinstance(nxt, nn.MaxPool1d)):
                outs.append(h)
        return outs


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


class FrameModel(nn.Module):
    """The encoder alone, its frames as the output: what CPC trains (ssl_min/objectives/cpc.py).
    forward: x (B, 1, T) -> z (B, out_dim, T'). A module of its own so that DDP wraps the whole
    forward; `encoder` is the representation, as in ContrastiveModel."""

    def __init__(self, encoder: SampleCNN):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor, groups: int = 1) -> torch.Tensor:
        return self.encoder.frames(x)

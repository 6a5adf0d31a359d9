"""A layer-wise readout of a frozen SampleCNN: statistics of every block, not only the output.

The probe's default features are the encoder's output, the representation the contrastive loss
shaped. But what a downstream task needs may sit lower: early blocks see timbre and texture over
a few milliseconds, late ones what the objective kept. Probes of audio models therefore often read
several layers (MARBLE probes each layer; Jukebox's best features are mid-network). This module
reads them all at once:

    x (B, 1, T) -> for each post-ReLU activation h_i (B, C_i, T_i) of encoder.block_outputs:
                   mean over time (B, C_i), and the standard deviation over time (B, C_i)
                   where T_i > 1  ->  concatenated (B, D), D = sum of those widths

Mean and standard deviation over time is the pooling of the MFCC baseline (ssl_min/evaluate/mfcc.py), so
the two rows of a probe differ in what is pooled, not in how. The encoder is not changed: this is
a view of it, with no parameters of its own. Its last block's mean is the encoder's output
(`output_columns`), so the probe's `--features auto` reads both readouts from one pass.
"""
import torch
import torch.nn as nn

FEATURES = ("output", "blocks")            # what the exporter and the HEAR model read (the probe adds "auto")


class BlockStats(nn.Module):
    """Wraps a SampleCNN: x (B, 1, T) or (B, T) -> (B, D) per-block mean and std over time."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for h in self.encoder.block_outputs(x):             # (B, C_i, T_i)
            feats.append(h.mean(dim=-1))
            if h.shape[-1] > 1:                              # one frame has no spread over time
                feats.append(h.std(dim=-1, correction=0))
        return torch.cat(feats, dim=1)

    def output_columns(self, chunk: int) -> slice:
        """The columns of forward()'s (B, D) that are the encoder's own output for chunks of `chunk`
        samples: the last block's mean over time, which is what the encoder's mean pooling (or, with
        one frame, its flatten) returns. So one pass yields both readouts (probe.py --features auto)."""
        frames, c = chunk // 3 ** (self.encoder.n_blocks + 1), self.encoder.out_dim
        return slice(-2 * c, -c) if frames > 1 else slice(-c, None)


def readout(encoder: nn.Module, features: str) -> nn.Module:
    """The module that reads `encoder` the named way: x (B, 1, T) -> (B, D). 'output': the encoder
    itself (its representation); 'blocks': BlockStats over it. Anything else is refused."""
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    return BlockStats(encoder) if features == "blocks" else encoder

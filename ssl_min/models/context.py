"""A small Transformer over SampleCNN's frames: the encoder of the masked objective (HuBERT, MERT).

    x (B, 1, T) --SampleCNN.frames-->  z (B, C, T')      one frame per 3^(n_blocks+1) samples
    z --LayerNorm, Linear-->           e (B, T', C)      HuBERT's feature projection
    e[mask] = mask_embedding                             training only: the frames to predict
    e + positions                                        a grouped convolution over time (wav2vec 2.0)
    --L pre-LN Transformer layers, LayerNorm-->  h (B, T', C)
    forward(x) = h's mean over time, (B, C): the representation probed and exported

The CNN sees a few tens of milliseconds; the Transformer lets every frame read the whole chunk,
which is what predicting a hidden frame from its neighbours needs. The positions come from a
convolution, not a table, so any chunk length works at inference. Pre-LN (the norm inside each
residual branch) trains without a learning-rate warm-up trick at this depth; dropout is 0, the
runs here are small and must repeat exactly. The CNN is CLMR's SampleCNN unchanged, with its
formulation switch (`conv`) and the attributes the probe and the exporter read (n_blocks, out_dim).
This file does no I/O.
"""
import torch
import torch.nn as nn

from ssl_min.models.samplecnn import SampleCNN


class MaskedEncoder(nn.Module):
    """SampleCNN + Transformer context. layers: Transformer layers; heads: attention heads
    (out_dim must divide by it); the feed-forward width is 4 * out_dim, as in BERT."""

    def __init__(self, cnn: SampleCNN, layers: int = 2, heads: int = 4):
        super().__init__()
        dim = cnn.out_dim
        if layers < 1:
            raise ValueError(f"the context needs at least one Transformer layer, got {layers}")
        if dim % heads:
            raise ValueError(f"the frames' width {dim} must divide by the attention heads, got {heads}")
        self.cnn = cnn
        self.project = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim))
        self.mask_embedding = nn.Parameter(torch.zeros(dim).uniform_())     # HuBERT: uniform init
        groups = next(g for g in (16, 8, 4, 2, 1) if dim % g == 0)
        self.positions = nn.Sequential(nn.Conv1d(dim, dim, kernel_size=15, padding=7, groups=groups), nn.GELU())
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    # What the probe, the exporter and the formulation switch read off an encoder.
    n_blocks = property(lambda self: self.cnn.n_blocks)
    out_dim = property(lambda self: self.cnn.out_dim)
    input_samples = property(lambda self: self.cnn.input_samples)

    @property
    def conv(self):
        return self.cnn.conv

    @conv.setter
    def conv(self, value):
        self.cnn.conv = value

    def context(self, z: torch.Tensor, mask: torch.Tensor | None = None, every_layer: bool = False):
        """z (B, C, T') CNN frames, mask (B, T') bool or None -> h (B, T', C); with every_layer,
        the list of each layer's output (the last one after the final LayerNorm)."""
        e = self.project(z.transpose(1, 2))                                # (B, T', C)
        if mask is not None:
            e = torch.where(mask[..., None], self.mask_embedding.to(e.dtype), e)
        h = e + self.positions(e.transpose(1, 2)).transpose(1, 2)
        outs = []
        for layer in self.layers:
            h = layer(h)
            outs.append(h)
        outs[-1] = self.norm(h)
        return outs if every_layer else outs[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 1, T) -> (B, C): the mean over frames of the last layer."""
        return self.context(self.cnn.frames(x)).mean(dim=1)

    def block_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x (B, 1, T) -> SampleCNN's post-ReLU activations, then each Transformer layer's output,
        every one (B, C_i, T_i): a layer-wise probe reads the context too (as MARBLE reads MERT).
        The last entry is what forward() averages."""
        cnn = self.cnn.block_outputs(x)
        return cnn + [h.transpose(1, 2) for h in self.context(cnn[-1], every_layer=True)]


class MaskedModel(nn.Module):
    """What the masked objective trains (and DDP wraps): x (B, 1, T), mask (B, T') -> h (B, T', C).
    `encoder` is the representation, as in ContrastiveModel."""

    def __init__(self, encoder: MaskedEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder.context(self.encoder.cnn.frames(x), mask)

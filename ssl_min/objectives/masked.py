"""Masked prediction (HuBERT, Hsu et al. 2021; MERT, Li et al. 2024): hide spans of frames, predict
what the teachers say was there.

    x (N, 1, T)  --teachers (clean audio, no gradient)-->  tokens (N, T') in 0..K-1, spectrum (N, T', S)
    mask (N, T') bool: spans of `span` frames; starts drawn so that prob * T' frames would be
                 masked without overlap (HuBERT's mask_prob 0.8 with spans of 10 masks about half)
    x  [--in-batch mixture: another clip of the batch added, 5 to 15 dB quieter (MERT), optional]
       --MaskedModel(x, mask)-->  h (N, T', C)      the mask embedding replaces the masked frames
    h  --heads-->  token logits (N, T', K), spectrum (N, T', S)
    loss = w_tokens * cross-entropy(logits, tokens) + w_spectrum * mean squared error(spectrum)
           both over the masked frames only

Every masked frame is a target, so a step carries N * T' * ~0.5 training signals where NT-Xent
has N; and the targets (chroma in the tokens, semitone bands in the spectrum) carry pitch and
harmony, which instance discrimination on effected crops has no reason to keep. The unmasked
frames are not scored (HuBERT found scoring only the masked ones best): predicting a frame the
model can see teaches it nothing about context.

The heads are linear (HuBERT scores frames against label embeddings by cosine; a linear softmax
over K is the same family, one matrix). Draws (the spans, the mixture) come from
`self.generator`, which train.py sets to its augmentation stream, saved in the checkpoint: a
resumed run masks exactly what the uninterrupted one would have.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ssl_min.objectives.base import Objective
from ssl_min.objectives.teachers import Teachers

MIX_DB = (5.0, 15.0)          # how much quieter the mixed-in clip is (MERT mixes at low levels)


def span_mask(n: int, frames: int, prob: float, span: int, generator: torch.Generator | None = None,
              device=None) -> torch.Tensor:
    """-> (n, frames) bool: per row, round(prob * frames / span) spans of `span` frames (at least
    one), their starts drawn without replacement from the frames - span + 1 possible ones; spans
    may overlap, as in HuBERT, so fewer than prob * frames frames end up masked."""
    if span > frames:
        raise ValueError(f"a mask span of {span} frames is longer than the chunk's {frames} frames")
    starts = frames - span + 1
    k = min(starts, max(1, round(prob * frames / span)))
    drawn_on = generator.device if generator is not None else "cpu"
    device = device if device is not None else drawn_on
    scores = torch.rand(n, starts, generator=generator, device=drawn_on)
    first = scores.topk(k, dim=1).indices.to(device)                        # (n, k): k distinct starts
    covered = (first[:, :, None] + torch.arange(span, device=device)).flatten(1)   # (n, k * span)
    mask = torch.zeros(n, frames, dtype=torch.bool, device=device)
    return mask.scatter_(1, covered, True)


def mix_in_batch(x: torch.Tensor, prob: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x (N, 1, T) -> x with, for each clip with probability `prob`, the next clip of the batch
    (a roll by one) added at MIX_DB below the clip's own level (RMS). The teachers read the clean x."""
    n = x.shape[0]
    u = torch.rand(n, 2, generator=generator, device=generator.device if generator is not None else "cpu")
    u = u.to(x.device)
    chosen = (u[:, 0] < prob).to(x.dtype)[:, None, None]
    db = MIX_DB[0] + (MIX_DB[1] - MIX_DB[0]) * u[:, 1]
    other = x.roll(1, dims=0)
    rms = lambda a: a.pow(2).mean(dim=(1, 2)).sqrt()                         # noqa: E731
    scale = rms(x) / rms(other).clamp(min=1e-8) * 10 ** (-db / 20)
    return x + chosen * scale.to(x.dtype)[:, None, None] * other


def masked_loss(logits, tokens, predicted, spectrum, mask, w_tokens=1.0, w_spectrum=1.0) -> torch.Tensor:
    """logits (N, T', K), tokens (N, T'), predicted and spectrum (N, T', S), mask (N, T') bool ->
    w_tokens * CE + w_spectrum * MSE, each the mean over the masked frames only."""
    loss = spectrum.new_zeros(())
    if w_tokens:
        loss = loss + w_tokens * F.cross_entropy(logits[mask], tokens[mask])
    if w_spectrum:
        loss = loss + w_spectrum * F.mse_loss(predicted[mask], spectrum[mask])
    return loss


class MaskedHeads(nn.Module):
    """h (N, T', C) -> (token logits (N, T', K), spectrum (N, T', S)): one linear map each. A head
    whose loss weighs 0 is not built (None out): DDP refuses parameters that get no gradient."""

    def __init__(self, dim: int, n_tokens: int, n_bands: int):
        super().__init__()
        self.tokens = nn.Linear(dim, n_tokens) if n_tokens else None
        self.spectrum = nn.Linear(dim, n_bands) if n_bands else None

    def forward(self, h):
        return tuple(None if head is None else head(h) for head in (self.tokens, self.spectrum))


class Masked(Objective):
    """The model is a MaskedModel (ssl_min/models/context.py). The teachers hold the codebook
    (fitted before training, ssl_min/data/codebook.py); the heads are trained with the model and,
    under torchrun, DDP-wrapped like it."""

    def __init__(self, dim, sample_rate, hop, n_tokens=64, prob=0.8, span=5, w_tokens=1.0, w_spectrum=1.0,
                 mix=0.0):
        super().__init__()
        self.teachers = Teachers(sample_rate, hop, n_tokens)
        self.own("heads", MaskedHeads(dim, n_tokens if w_tokens else 0, self.teachers.n_bands if w_spectrum else 0))
        self.prob, self.span, self.w_tokens, self.w_spectrum, self.mix = prob, span, w_tokens, w_spectrum, mix

    def forward(self, model, x, ids=None, groups=1):
        if not bool(self.teachers.fitted):
            raise RuntimeError("the masked objective's codebook was never fitted (ssl_min/data/codebook.py)")
        features, spectrum = self.teachers(x)                                # from the clean audio
        tokens, spectrum = self.teachers.tokens(features), self.teachers.standard_spectrum(spectrum)
        mask = span_mask(x.shape[0], tokens.shape[1], self.prob, self.span, self.generator, x.device)
        if self.mix > 0:
            x = mix_in_batch(x, self.mix, self.generator)
        logits, predicted = self.run(model(x, mask=mask))
        f32 = lambda t: None if t is None else t.float()                      # noqa: E731
        with torch.autocast(device_type=x.device.type, enabled=False):
            return masked_loss(f32(logits), tokens, f32(predicted), spectrum, mask, self.w_tokens, self.w_spectrum)

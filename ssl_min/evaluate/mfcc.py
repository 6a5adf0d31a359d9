"""The hand-crafted baseline every SSL result should beat: MFCC statistics.

    x: (B, 1, T) or (B, T) audio at `sample_rate`  ->  f: (B, 6 * n_mfcc)

40 MFCCs (log-mel, DCT-II), their deltas and delta-deltas, each summarised over time by its mean
and standard deviation: the classic "bag of frames" features of music classification
(Tzanetakis & Cook 2002, and the MFCC baselines of the MIR literature since). The settings are
librosa's defaults for music scaled to the rate: a ~93 ms Hann window (2048 samples at 22050 Hz),
hop of a quarter window, 128 mel bands (64 below 16 kHz, so no band is empty), 80 dB dynamic range.
In the probe these features go through the very same standardisation, head selection, chunking
and track-level averaging as the encoders' embeddings. This file does no I/O.
"""
import math

import torch
import torch.nn as nn
import torchaudio.functional as AF
import torchaudio.transforms as T


def mfcc_settings(sample_rate):
    """Window, FFT size, hop and mel bands for a rate (librosa's music defaults, scaled)."""
    win = round(0.0929 * sample_rate)
    n_fft = 1 << math.ceil(math.log2(win))
    return {"win_length": win, "n_fft": n_fft, "hop_length": win // 4,
            "n_mels": 128 if sample_rate >= 16000 else 64}


class MFCCStats(nn.Module):
    """Mean and std over time of MFCCs, deltas and delta-deltas: (B, 1, T) -> (B, 6 * n_mfcc)."""

    def __init__(self, sample_rate, n_mfcc=40):
        super().__init__()
        self.sample_rate, self.n_mfcc = sample_rate, n_mfcc
        self.out_dim = 6 * n_mfcc
        self.mfcc = T.MFCC(sample_rate, n_mfcc=n_mfcc, melkwargs=mfcc_settings(sample_rate))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], 1, -1).float()                        # (B, 1, T)
        # The channel axis matters: torchaudio's 80 dB floor is taken per item of the leading
        # axis, so a (B, T) input would clamp every chunk against the loudest one in the batch.
        c = self.mfcc(x)[:, 0]                                          # (B, n_mfcc, frames)
        d1 = AF.compute_deltas(c)
        d2 = AF.compute_deltas(d1)
        feats = torch.cat([c, d1, d2], dim=1)                           # (B, 3 n_mfcc, frames)
        return torch.cat([feats.mean(-1), feats.std(-1, unbiased=False)], dim=1)

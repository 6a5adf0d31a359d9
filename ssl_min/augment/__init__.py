"""The positive pair's audio effects: torchaudio-augmentations' names, batched, seeded, on any device.

Drop-in for the chain CLMR and the DL101 tutorial build with torchaudio-augmentations 0.2.4 (same
class names, constructor arguments and meanings; differences: docs/augmentations.md). Every effect
samples its parameters, then applies them (base.py); a batch (B, C, T) draws per example, on the
batch's device, from one generator. Read in this order:

    base.py      the protocol: sample, then apply; shapes and dtypes
    compose.py   RandomApply, Compose: effects on a random subset, in order
    simple.py    polarity, noise, gain, delay, time mask
    filters.py   windowed-sinc low/high-pass by FFT convolution
    shared.py    an effect's costly set-up shared by a few examples (--effect_reuse)
    reverb.py    sox's reverb as a transfer function
    pitch.py     pitch shift by a phase vocoder
    chain.py     CLMR's chain: build_chain(...), chain_for(cfg)
"""
from ssl_min.augment.base import Augmentation
from ssl_min.augment.chain import build_chain, chain_for
from ssl_min.augment.compose import Compose, ComposeMany, RandomApply, RandomResizedCrop
from ssl_min.augment.filters import HighLowPass, HighPassFilter, LowPassFilter, fft_length
from ssl_min.augment.pitch import PitchShift
from ssl_min.augment.reverb import ALLPASS_LENGTHS, CACHE_ELEMENTS, COMB_LENGTHS, Reverb, sox_reverb_settings
from ssl_min.augment.simple import Delay, Gain, Noise, PolarityInversion, TimeMask

__all__ = ["Augmentation", "build_chain", "chain_for", "Compose", "ComposeMany", "RandomApply", "RandomResizedCrop",
           "HighLowPass", "HighPassFilter", "LowPassFilter", "fft_length", "PitchShift", "Reverb",
           "sox_reverb_settings", "COMB_LENGTHS", "ALLPASS_LENGTHS", "CACHE_ELEMENTS", "Delay", "Gain", "Noise",
           "PolarityInversion", "TimeMask"]

"""CLMR's chain of effects (and the DL101 tutorial's), built from arguments or from a train.py config.

    build_chain(sample_rate, p_polarity=0.8, ...) -> Compose   CLMR's order and probabilities
    chain_for(cfg)                                -> Compose   the chain a config asks for
"""
from ssl_min.augment.compose import Compose, RandomApply
from ssl_min.augment.filters import HighLowPass
from ssl_min.augment.pitch import PitchShift
from ssl_min.augment.reverb import Reverb
from ssl_min.augment.simple import Delay, Gain, Noise, PolarityInversion, TimeMask


def build_chain(sample_rate, p_polarity=0.8, p_noise=0.01, min_snr=0.0001, max_snr=0.01, p_gain=0.3,
                p_filter=0.8, p_delay=0.3, p_reverb=0.6, lowpass=(2200, 4000), highpass=(200, 1200),
                p_pitch=0.0, n_samples=0, p_time_mask=0.0, time_mask_max=0.5, effect_reuse=1):
    """The CLMR / DL101 chain in CLMR's order (CLMR's probabilities by default; CLMR's pitch shift,
    p=0.6, comes with p_pitch > 0). lowpass / highpass: cutoff ranges in Hz (torchaudio-augmentations'
    defaults). A time mask (not CLMR's) comes last, and only with p_time_mask > 0: without it the
    chain draws exactly CLMR's random numbers. effect_reuse > 1: the filter's kernels and the
    reverb's rooms are shared by about that many examples each (ssl_min/augment/shared.py)."""
    if not (isinstance(effect_reuse, int) and effect_reuse >= 1):
        raise ValueError(f"effect_reuse must be an integer >= 1, got {effect_reuse!r}")
    mask = [RandomApply([TimeMask(time_mask_max)], p=p_time_mask)] if p_time_mask > 0 else []
    return Compose([
        RandomApply([PolarityInversion()], p=p_polarity),
        RandomApply([Noise(min_snr=min_snr, max_snr=max_snr)], p=p_noise),
        RandomApply([Gain()], p=p_gain),
        RandomApply([HighLowPass(sample_rate, *lowpass, *highpass, reuse=effect_reuse)], p=p_filter),
        RandomApply([Delay(sample_rate=sample_rate)], p=p_delay),
        RandomApply([PitchShift(n_samples, sample_rate)], p=p_pitch),
        RandomApply([Reverb(sample_rate=sample_rate, reuse=effect_reuse)], p=p_reverb),
    ] + mask)


def chain_for(cfg):
    """The chain a train.py config (ssl_min/config.py) asks for: its rate, effect probabilities,
    noise and cutoff ranges, and chunk length. train.py and bench/train.py build it here, so a
    new effect's fields are passed in one place."""
    return build_chain(cfg.sample_rate, cfg.p_polarity, cfg.p_noise, cfg.min_snr, cfg.max_snr, cfg.p_gain,
                       cfg.p_filter, cfg.p_delay, cfg.p_reverb, (cfg.lowpass_min, cfg.lowpass_max),
                       (cfg.highpass_min, cfg.highpass_max), cfg.p_pitch, cfg.chunk_samples,
                       cfg.p_time_mask, cfg.time_mask_max, cfg.effect_reuse)

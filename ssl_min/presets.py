"""train.py's starting values: each preset sets fields of Config (ssl_min/config.py), flags override
them; some objectives bring their own defaults over the preset's (said in the log, saved in the
config, flags win). Why each value: the comments, and the bench logs they name.

    PRESETS[name]            -> {field: value}   clmr (the paper), tutorial (DL101), demo, cpu
    OBJECTIVE_DEFAULTS[name] -> {field: value}   cpc and masked: frames, single chunks, no effects
"""

PRESETS = {
    "clmr": {},  # the dataclass defaults are CLMR's paper settings
    "tutorial": dict(pool="mean", chunk_samples=59535, batch_size=96, lr=1e-4, p_polarity=0.8,
                     p_noise=0.3, min_snr=0.001, max_snr=0.005, p_gain=0.2, p_filter=1.0,
                     p_delay=0.5, p_reverb=0.3, p_pitch=0.0),
    # The built-in demo: a few minutes on 2 CPU cores, 0.82-s chunks at 8 kHz, a quarter-width
    # SampleCNN. effect_reuse 4 shares each filter cutoff and reverb room among ~4 clips of a batch,
    # which keeps the chain a small share of the step (bench/performance_log.md). The effects' ranges
    # cover the demo's drawn productions (ssl_min/data/production.py: noise floor, level, room,
    # band limits), so the views differ the way its recordings do; this chain beat CLMR's ranges and
    # crops only on the validation split (bench/demo_ablation.py, bench/demo_log.md).
    "demo": dict(data="data/demo/unlabeled", sample_rate=8000, n_blocks=7, width=0.25, batch_size=128, lr=2e-3,
                 warmup_steps=20, schedule="cosine", max_steps=400, temperature=0.2, p_pitch=0.0,
                 p_noise=0.5, min_snr=0.005, max_snr=0.2, p_gain=0.8, p_reverb=0.6,
                 lowpass_min=1200.0, lowpass_max=3500.0, highpass_min=40.0, highpass_max=400.0,
                 num_workers=1, ckpt_every=100, effect_reuse=4),
    # Real music on a 2-core CPU (bench/real_music.py), every choice made on the mean over 5
    # re-splits of the labeled tracks (bench/real_music_log.md has the runs): no effects, two random
    # crops of a track (every effect erased some of what tells recordings apart); many short chunks
    # (0.27 s, 6 blocks: one output frame) in big batches; tau 0.2; 2500 steps, where the probe
    # stopped rising; lr 4e-3 for the batch of 288. max_minutes 18 caps the steps on a slower CPU, so
    # the run ends by itself within 20 minutes, cache build included.
    "cpu": dict(sample_rate=8000, n_blocks=6, width=0.25, pool="mean", chunk_samples=2187, batch_size=288,
                lr=4e-3, warmup_steps=20, schedule="cosine", max_steps=2500, max_minutes=18,
                temperature=0.2, p_polarity=0.0,
                p_noise=0.0, p_gain=0.0, p_filter=0.0, p_delay=0.0, p_reverb=0.0, p_pitch=0.0,
                lowpass_min=1500.0, lowpass_max=3500.0, num_workers=1, ckpt_every=100),
}
# An objective's own starting values, applied over the preset's (flags given still win) and said in
# the log. CPC reads frames, not one vector: SampleCNN with 4 blocks (a frame per 243 samples), a
# mean-pooled 64-frame chunk, no effects (ssl_min/objectives/cpc.py says why).
# The masked objective reads frames too: the same 4 blocks and 64 frames, a Transformer over them, no
# effects (the teachers describe the audio the model hears; the mixture is its own option), and
# batches of 64, so that a demo step costs about what SimCLR's does (chosen on the demo's validation
# split at equal wall-clock: bench/demo_log.md).
OBJECTIVE_DEFAULTS = {
    "cpc": dict(n_blocks=4, pool="mean", chunk_samples=3 ** 5 * 64, p_polarity=0.0, p_noise=0.0, p_gain=0.0,
                p_filter=0.0, p_delay=0.0, p_pitch=0.0, p_reverb=0.0, p_time_mask=0.0),
    "masked": dict(n_blocks=4, pool="mean", chunk_samples=3 ** 5 * 64, batch_size=64, p_polarity=0.0, p_noise=0.0,
                   p_gain=0.0, p_filter=0.0, p_delay=0.0, p_pitch=0.0, p_reverb=0.0, p_time_mask=0.0),
}

"""Augmentations checked on sines and impulses against measured values and references (sox too)."""
import math
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from ssl_min import augment as A
from ssl_min.augment.pitch import _istft as istft

SR = 22050


def sine(freq, seconds=1.0, sr=SR, amp=0.5):
    t = torch.arange(int(seconds * sr), dtype=torch.float64) / sr
    return (amp * torch.sin(2 * math.pi * freq * t)).float()


def db(a, b):
    """Level of a relative to b in dB (RMS), on the middle half to keep edges out."""
    n = a.shape[-1]
    mid = slice(n // 4, 3 * n // 4)
    return 20 * math.log10(a[..., mid].pow(2).mean().sqrt() / b[..., mid].pow(2).mean().sqrt())


def all_transforms():
    return [A.PolarityInversion(), A.Noise(), A.Gain(), A.HighPassFilter(SR), A.LowPassFilter(SR),
            A.HighLowPass(SR), A.Delay(SR), A.Reverb(SR), A.PitchShift(3000, SR),
            A.RandomApply([A.Gain(), A.Delay(SR)], p=0.5),
            A.Compose([A.PolarityInversion(), A.Reverb(SR)])]


def test_polarity_is_exact():
    x = torch.randn(2, 1, 1000)
    assert torch.equal(A.PolarityInversion()(x), -x)


@pytest.mark.parametrize("gain_db", [-20.0, -6.0, -1.0])
def test_gain_measured_in_db(gain_db):
    x = sine(440)
    assert abs(db(A.Gain(gain_db, gain_db)(x), x) - gain_db) < 0.01


def test_gain_draws_within_range_per_example():
    y = A.Gain(-20, -1)(sine(440).repeat(64, 1, 1), generator=torch.Generator().manual_seed(0))
    gains = torch.tensor([db(y[i, 0], sine(440)) for i in range(64)])
    assert ((gains > -20.01) & (gains < -0.99)).all()
    # Drawn per example, uniformly in dB: spread over the range, not one value for the batch.
    assert gains.std() > 3 and gains.min() < -15 and gains.max() > -6


@pytest.mark.parametrize("ms", [200, 350, 500])
def test_delay_exact_sample_and_weights(ms):
    x = torch.zeros(1, 1, SR)
    x[..., 100] = 1.0
    y = A.Delay(SR, volume_factor=0.5, min_delay=ms, max_delay=ms)(x)
    off = int(ms * SR / 1000)
    expected = torch.zeros_like(x)
    expected[..., 100] = 0.5            # (x + ...) / 2
    expected[..., 100 + off] = 0.25     # (... + 0.5 * x delayed) / 2
    assert torch.equal(y, expected)


def test_delay_of_each_example_equals_shifting_it_by_hand():
    """Per-example offsets in one batch, 0 and longer than the clip included, every channel alike."""
    x = torch.randn(4, 2, 300, generator=torch.Generator().manual_seed(0))
    offset = torch.tensor([0, 1, 299, 450])
    y = A.Delay(SR, volume_factor=0.7).apply(x, {"offset": offset})
    for b, d in enumerate(offset.tolist()):
        shifted = torch.zeros_like(x[b])
        shifted[:, d:] = x[b, :, :max(300 - d, 0)]
        torch.testing.assert_close(y[b], (x[b] + 0.7 * shifted) / 2, rtol=0, atol=0)


def test_delay_choices_are_the_inclusive_grid():
    x = torch.zeros(400, 1, SR)
    x[..., 0] = 1.0
    y = A.Delay(SR, min_delay=200, max_delay=500, delay_interval=50)(x)
    offsets = {int(torch.nonzero(y[i, 0, 1:])[0]) + 1 for i in range(400)}
    assert offsets == {int(ms * SR / 1000) for ms in range(200, 501, 50)}


@pytest.mark.parametrize("max_fraction", [0.0, 0.3, 1.0])
def test_time_mask_zeroes_one_segment_where_its_draws_say(max_fraction):
    """Each example: exactly the samples start .. start + length - 1 zeroed (length and start from
    its own two uniform draws, written out by hand here), every other sample untouched."""
    T, B = 1000, 64
    x = torch.rand(B, 2, T) + 0.5                                   # no zero of its own
    y = A.TimeMask(max_fraction)(x, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    fraction = torch.rand(B, generator=g, dtype=torch.float64) * max_fraction
    where = torch.rand(B, generator=g, dtype=torch.float64)
    lengths = []
    for b in range(B):
        length = int(fraction[b] * T)
        start = min(int(where[b] * (T - length + 1)), T - length)
        ref = x[b].clone()
        ref[:, start:start + length] = 0
        assert torch.equal(y[b], ref), b
        lengths.append(length)
    assert max(lengths) <= max_fraction * T
    if max_fraction > 0:                                            # the draws spread over the range
        assert min(lengths) < 0.2 * max_fraction * T and max(lengths) > 0.8 * max_fraction * T


def test_time_mask_joins_the_chain_last_and_only_when_asked():
    """p_time_mask 0 builds exactly the chain of before (the same random draws, so every other
    preset's runs stay as they were); p_time_mask > 0 appends the mask after the other effects."""
    plain = A.build_chain(SR, p_polarity=0.5, p_gain=0.5, p_filter=0.5)
    assert len(plain.transforms) == 7
    masked = A.build_chain(SR, p_polarity=0.5, p_gain=0.5, p_filter=0.5, p_time_mask=0.5, time_mask_max=0.25)
    last = masked.transforms[-1]
    assert isinstance(last.transforms.transforms[0], A.TimeMask) and last.p == 0.5
    assert last.transforms.transforms[0].max_fraction == 0.25
    x = 0.1 * torch.randn(16, 1, 3000)
    y_plain = plain(x, generator=torch.Generator().manual_seed(1))
    y_masked = masked(x, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    ref = x
    for t in masked.transforms[:-1]:                                # the same draws as the plain chain ...
        ref = t(ref, generator=g)
    assert torch.equal(ref, y_plain)
    assert torch.equal(masked.transforms[-1](ref, generator=g), y_masked)   # ... then the mask's
    assert not torch.equal(y_masked, y_plain)
    with pytest.raises(ValueError):
        A.TimeMask(1.5)


@pytest.mark.parametrize("ratio", [0.001, 0.01, 0.3])
def test_noise_ratio(ratio):
    x = sine(440, seconds=2.0)
    y = A.Noise(ratio, ratio)(x)
    assert abs((y - x).std() / x.std() - ratio) / ratio < 0.02


@pytest.mark.parametrize("cutoff", [300.0, 1000.0, 3000.0])
def test_lowpass_keeps_octave_below_cuts_octave_above(cutoff):
    lp = A.LowPassFilter(SR, cutoff, cutoff)
    assert abs(db(lp(sine(cutoff / 2)), sine(cutoff / 2))) < 2
    assert db(lp(sine(cutoff * 2)), sine(cutoff * 2)) < -15


def test_fft_length_is_the_smallest_fast_length():
    fast = sorted(2 ** a * 3 ** b for a in range(5, 18) for b in range(12))
    for n in list(range(33, 3000)) + [6561, 6881, 59049, 65536, 65537]:
        assert A.fft_length(n) == next(m for m in fast if m >= n)
    assert [A.fft_length(n) for n in (1, 2, 3, 17, 32)] == [1, 2, 4, 32, 32]


@pytest.mark.parametrize("n", [1000, 6561])
def test_sinc_filters_equal_direct_convolution_of_the_edge_padded_input(n):
    """Against numpy: each example's kernel slid over its input padded by repeating its end samples."""
    x = torch.randn(4, 2, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    f = A.HighLowPass(SR, 1500, 3500, 200, 1200)
    params = f.sample(4, x.device, torch.Generator().manual_seed(1))
    kernels = f.kernels(params["cutoff"], params["highpass"]).numpy()
    y = f.apply(x, params).numpy()
    for b, k in enumerate(kernels):
        h = len(k) // 2
        for c in range(2):
            xp = np.concatenate([np.full(h, x[b, c, 0].item()), x[b, c].numpy(), np.full(h, x[b, c, -1].item())])
            np.testing.assert_allclose(y[b, c], np.convolve(xp, k, mode="valid"), atol=1e-10)


@pytest.mark.parametrize("cutoff", [300.0, 1000.0, 3000.0])
def test_highpass_keeps_octave_above_cuts_octave_below(cutoff):
    hp = A.HighPassFilter(SR, cutoff, cutoff)
    assert abs(db(hp(sine(cutoff * 2)), sine(cutoff * 2))) < 2
    assert db(hp(sine(cutoff / 2)), sine(cutoff / 2)) < -15


def test_highlowpass_flips_a_fair_coin_per_example():
    x = sine(100).repeat(400, 1, 1)     # a 100 Hz tone: kept by every low-pass, cut by every high-pass
    y = A.HighLowPass(SR)(x)
    kept = sum(db(y[i, 0], x[0, 0]) > -2 for i in range(400))
    assert 150 < kept < 250


# ---- pitch shift: a phase vocoder and a faster read, batched ----

def peak_hz(x, sr=SR):
    seg = x[x.shape[-1] // 4:3 * x.shape[-1] // 4]
    n = 1 << 18
    return torch.fft.rfft(seg * torch.hann_window(len(seg)), n).abs().argmax().item() * sr / n


@pytest.mark.parametrize("semitones", [-7.0, -3.5, 0.0, 2.0, 7.0])
def test_pitch_shifted_sine_lands_on_f_times_two_to_the_s_over_12(semitones):
    x = sine(440)
    y = A.PitchShift(SR, SR, semitones, semitones)(x)
    assert y.shape == x.shape
    assert abs(peak_hz(y) / (440 * 2 ** (semitones / 12)) - 1) < 0.01
    assert abs(db(y, x)) < 1.5                                         # the level is kept


def test_pitch_shifts_are_drawn_per_example():
    x = sine(440).repeat(8, 1, 1)
    y = A.PitchShift(SR, SR)(x, generator=torch.Generator().manual_seed(0))
    peaks = [peak_hz(y[i, 0]) for i in range(8)]
    semitones = [12 * math.log2(p / 440) for p in peaks]
    assert len({round(s) for s in semitones}) >= 5 and all(-7.1 < s < 7.1 for s in semitones)


@pytest.mark.parametrize("n_fft, hop", [(256, 64), (512, 128), (512, 256)])
def test_overlap_add_equals_torch_istft(n_fft, hop):
    g = torch.Generator().manual_seed(3)
    frames = torch.randn(3, 20, n_fft // 2 + 1, dtype=torch.complex128, generator=g)
    frames[..., 0] = frames[..., 0].real                               # a real signal's DC and Nyquist bins
    frames[..., -1] = frames[..., -1].real
    window = torch.hann_window(n_fft, dtype=torch.float64)
    ref = torch.istft(frames.transpose(1, 2), n_fft, hop, window=window, length=hop * 19)
    assert (istft(frames, window, hop) - ref).abs().max() < 1e-12


def textbook_pitch_shift(x, semitones, n_fft, hop):
    """One example (T,) float64, frame by frame, the phase advance as angle arithmetic with 2 pi
    wrapping (as torchaudio's phase_vocoder), then the linear-interpolation read; the same frame
    grid, anchor and output length as PitchShift's docstring and comments describe."""
    T, r = x.shape[-1], 2.0 ** (semitones / 12)
    window = torch.hann_window(n_fft, dtype=torch.float64)
    X = torch.stft(x[None], n_fft, hop, window=window, return_complex=True)[0]        # (F, N)
    F, N = X.shape
    n_out = int(((T - 1) * r + 2 + n_fft // 2) // hop) + 1
    anchor = min(math.ceil(n_fft // (2 * hop) * r), n_out - 1)
    omega = 2 * math.pi * hop / n_fft * torch.arange(F, dtype=torch.float64)
    frames, phase, advance = [], None, None
    for k in range(n_out):
        pos = min(k / r, N - 1)
        i0 = math.floor(pos)
        i1, frac = min(i0 + 1, N - 1), pos - i0
        mag = (1 - frac) * X[:, i0].abs() + frac * X[:, i1].abs()
        phase = X[:, i0].angle() if k <= anchor else phase + advance
        d = X[:, i1].angle() - X[:, i0].angle() - omega
        advance = d - 2 * math.pi * torch.round(d / (2 * math.pi)) + omega
        frames.append(torch.polar(mag, phase))
    stretched = torch.istft(torch.stack(frames, -1)[None], n_fft, hop, window=window, length=hop * (n_out - 1))[0]
    t = torch.arange(T, dtype=torch.float64) * r
    j0 = t.floor().long()
    return torch.lerp(stretched[j0], stretched[j0 + 1], t - j0)


@pytest.mark.parametrize("semitones", [-7.0, -2.3, 0.0, 4.6, 7.0])
def test_pitch_shift_equals_the_textbook_phase_vocoder(semitones):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 8000, dtype=torch.float64, generator=g) * 0.1
    x[1, :, :3000] = 0                                                  # silent bins: phase 0, then sound
    shift = A.PitchShift(8000, 16000)
    y = shift.apply(x, {"semitones": torch.full((2,), semitones, dtype=torch.float64)})
    for i in range(2):
        ref = textbook_pitch_shift(x[i, 0], semitones, shift.n_fft, shift.hop)
        assert (y[i, 0] - ref).abs().max() < 1e-9


def test_pitch_shift_of_an_example_does_not_depend_on_its_batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 1, 6000, generator=g) * 0.1
    shift = A.PitchShift(6000, 8000)
    params = {"semitones": torch.tensor([7.0, -7.0, 0.5, -3.0, 6.0, 2.0], dtype=torch.float64)}
    batch = shift.apply(x, params)
    alone = torch.cat([shift.apply(x[i:i + 1], {"semitones": params["semitones"][i:i + 1]}) for i in range(6)])
    assert (alone - batch).abs().max() < 1e-6


# ---- reverb: sox's algorithm, checked sample by sample against a loop and against sox itself ----

def sox_reverb_loop(x, sr, reverberance, hf_damping, room_scale, offset):
    """sox's reverb.c filter array for one channel, one sample at a time (float64)."""
    a = -1 / math.log(0.7)
    b = 100 / (math.log(0.02) * a + 1)
    fb = 1 - math.exp((reverberance - b) / (a * b))
    d = hf_damping / 100 * 0.3 + 0.2
    scale = room_scale / 100 * 0.9 + 0.1
    r = sr / 44100
    combs = [np.zeros(int(scale * r * (n + 12 * offset * (-1) ** i) + 0.5)) for i, n in enumerate(A.COMB_LENGTHS)]
    allpasses = [np.zeros(int(r * (n + 12 * offset * (-1) ** i) + 0.5)) for i, n in enumerate(A.ALLPASS_LENGTHS)]
    store = [0.0] * len(combs)
    y = np.zeros(len(x))
    for t, inp in enumerate(x):
        out = 0.0
        for i, buf in enumerate(combs):
            o = buf[t % len(buf)]
            store[i] = o + (store[i] - o) * d
            buf[t % len(buf)] = inp + store[i] * fb
            out += o
        for buf in allpasses:
            o = buf[t % len(buf)]
            buf[t % len(buf)] = out + o * 0.5
            out = o - out
        y[t] = out * 0.015
    return y


@pytest.mark.parametrize("params,n", [((50, 50, 100), 4000), ((100, 0, 100), 4000), ((0, 100, 0), 4000),
                                      ((90, 30, 60), 4000), ((100, 0, 100), 2187), ((90, 30, 60), 6561)])
def test_reverb_equals_sox_algorithm_loop(params, n):
    """n: the FFT lengths 4096 (a power of 2), 2304 (2^8 3^2) and 6912 (2^8 3^3)."""
    sr = 8000
    x = np.random.default_rng(0).normal(0, 0.1, n)
    ref = x + 0.5 * (sox_reverb_loop(x, sr, *params, 0) + sox_reverb_loop(x, sr, *params, 1))
    rev, damp, room = params
    y = A.Reverb(sr, rev, rev, damp, damp, room, room)(torch.tensor(x)[None])
    np.testing.assert_allclose(y[0].numpy(), ref, atol=1e-9)


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed (apt-get install sox)")
@pytest.mark.parametrize("params", [(50, 50, 100), (100, 0, 100), (10, 100, 20), (80, 40, 60)])
def test_reverb_matches_sox_binary(tmp_path, params):
    x = np.random.default_rng(1).normal(0, 0.05, SR).astype(np.float32)
    sf.write(tmp_path / "in.wav", x, SR, subtype="FLOAT")
    subprocess.run(["sox", "-V1", str(tmp_path / "in.wav"), "-e", "floating-point", str(tmp_path / "out.wav"),
                    "reverb", *map(str, params), "channels", "1"], check=True)
    ref, sr = sf.read(tmp_path / "out.wav", dtype="float32")
    rev, damp, room = params
    reverb = A.Reverb(SR, rev, rev, damp, damp, room, room)
    exact = reverb(torch.from_numpy(x).double()[None])[0].numpy()       # the float64 path
    assert sr == SR and ref.shape == exact.shape
    np.testing.assert_allclose(exact, ref, atol=1e-6)
    # The float32 path (training's) trades exactness for speed: its wet signal within 1e-3 RMS.
    fast = reverb(torch.from_numpy(x)[None])[0].numpy()
    wet_rms = np.sqrt(np.mean((ref - x) ** 2))
    assert fast.dtype == np.float32 and np.sqrt(np.mean((fast - ref) ** 2)) < 1e-3 * wet_rms


def test_reverb_float32_path_is_close_to_the_float64_path():
    sr, T = 8000, 6561
    g = torch.Generator().manual_seed(0)
    x = 0.1 * torch.randn(16, 1, T, dtype=torch.float64, generator=g)
    reverb = A.Reverb(sr)
    params = reverb.sample(16, x.device, g)
    wet64 = reverb.apply(x, params) - x
    wet32 = reverb.apply(x.float(), params) - x.float()
    err = (wet32.double() - wet64).pow(2).mean(-1).sqrt() / wet64.pow(2).mean(-1).sqrt()   # (16, 1)
    assert wet32.dtype == torch.float32 and err.max() < 1e-3


def test_reverb_batch_in_cache_blocks_equals_each_example_alone():
    """On the CPU the combs go in blocks of a few examples (CACHE_ELEMENTS); a batch of three and a
    bit blocks, each example with its own parameters, equals each example reverberated alone."""
    sr, T = 8000, 6561
    g = torch.Generator().manual_seed(3)
    reverb = A.Reverb(sr)
    n_fft = A.fft_length(T)
    # an upper bound on the code's block (it counts A * S >= n_fft // 2 + 1 bins per comb), so B spans >= 4 blocks
    per_block = max(1, A.CACHE_ELEMENTS // (len(A.COMB_LENGTHS) * (n_fft // 2 + 1)))
    B = 3 * per_block + 2
    x = 0.1 * torch.randn(B, 1, T, dtype=torch.float64, generator=g)
    params = reverb.sample(B, x.device, g)
    batch = reverb.apply(x, params)
    alone = torch.cat([reverb.apply(x[i:i + 1], {k: v[i:i + 1] for k, v in params.items()}) for i in range(B)])
    assert B > 3 and (batch - alone).abs().max() < 1e-9      # float64's accuracy here (against sox's loop: 1e-9)


def rt60(reverberance, room, sr=8000, hf_damping=50, seconds=16):
    """Decay time of the impulse response: Schroeder backward integration, -5..-25 dB fit x3."""
    x = torch.zeros(1, 1, seconds * sr, dtype=torch.float64)
    x[..., 0] = 1.0
    h = A.Reverb(sr, reverberance, reverberance, hf_damping, hf_damping, room, room)(x)[0, 0, 1:]
    edc = torch.flip(torch.cumsum(torch.flip(h ** 2, [0]), 0), [0])
    edc_db = 10 * torch.log10(edc / edc[0])
    t5 = int((edc_db < -5).nonzero()[0])
    t25 = int((edc_db < -25).nonzero()[0])
    return 3 * (t25 - t5) / sr


def predicted_rt60(reverberance, room):
    """Low-frequency theory: each pass of a comb of mean length L multiplies by the feedback g,
    so 60 dB takes ln(1000) / -ln(g) passes of L / 44100 s (sox scales L with the rate)."""
    g, _, scale = A.sox_reverb_settings(torch.tensor(float(reverberance)), torch.tensor(50.0),
                                        torch.tensor(float(room)))
    mean_len = scale.item() * sum(A.COMB_LENGTHS) / len(A.COMB_LENGTHS) / 44100
    return math.log(1000) / -math.log(g.item()) * mean_len


def test_reverb_decay_grows_with_reverberance_and_room_size_as_theory_says():
    by_reverberance = [rt60(r, 100) for r in (0, 50, 100)]
    by_room = [rt60(70, s) for s in (0, 50, 100)]
    assert by_reverberance[0] < by_reverberance[1] < by_reverberance[2]
    assert by_room[0] < by_room[1] < by_room[2]
    for reverberance, room in [(100, 100), (50, 100), (70, 50)]:
        assert abs(rt60(reverberance, room) / predicted_rt60(reverberance, room) - 1) < 0.25


# ---- batching, randomness, shapes, dtypes ----

def test_random_apply_fraction_close_to_p():
    x = torch.ones(4000, 1, 16)
    for p in (0.2, 0.8):
        y = A.RandomApply([A.PolarityInversion()], p=p)(x)
        assert abs((y[:, 0, 0] < 0).float().mean().item() - p) < 0.03


def test_polarity_by_its_factor_equals_copying_the_chosen_examples_out_and_back():
    """RandomApply multiplies by PolarityInversion's factor (-1 or 1 per example); three flips in
    a row take the general path (copy out, apply, write back) with the same coins."""
    x = torch.randn(64, 2, 100)
    fast = A.RandomApply([A.PolarityInversion()], p=0.5)
    slow = A.RandomApply([A.PolarityInversion()] * 3, p=0.5)
    y, ref = fast(x, generator=torch.Generator().manual_seed(5)), slow(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(y, ref)
    flipped = (y == -x).flatten(1).all(1)
    assert 0 < flipped.sum() < 64 and torch.equal(y[~flipped], x[~flipped])


def test_same_generator_seed_same_output_and_global_rng_by_default():
    chain = A.Compose(all_transforms())
    x = torch.randn(4, 1, 4000)
    y1 = chain(x, generator=torch.Generator().manual_seed(7))
    y2 = chain(x, generator=torch.Generator().manual_seed(7))
    assert torch.equal(y1, y2)
    torch.manual_seed(3)
    y3 = chain(x)
    torch.manual_seed(3)
    assert torch.equal(y3, chain(x))


@pytest.mark.parametrize("t", all_transforms(), ids=lambda t: type(t).__name__)
@pytest.mark.parametrize("shape", [(3000,), (2, 3000), (3, 1, 3000), (2, 6, 3000)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_shapes_dtypes_lengths_and_silence(t, shape, dtype):
    x = (0.1 * torch.randn(shape)).to(dtype)
    y = t(x)
    assert y.shape == x.shape and y.dtype == dtype
    silent = t(torch.zeros(shape, dtype=dtype))
    assert torch.isfinite(silent.float()).all()


def test_compose_many_and_random_resized_crop():
    x = torch.randn(2, 10000)
    y = A.ComposeMany([A.RandomResizedCrop(3000), A.PolarityInversion()], num_augmented_samples=4)(x)
    assert y.shape == (4, 2, 3000)
    crops = A.RandomResizedCrop(3000)(x[None].repeat(16, 1, 1))
    starts = {int((x[0] == c[0, 0]).nonzero()[0]) for c in crops}
    assert len(starts) > 1
    with pytest.raises(ValueError, match="3000"):
        A.RandomResizedCrop(3000)(torch.randn(1, 100))


def test_the_tutorials_chain_runs_unchanged_after_swapping_the_import():
    # As written for torchaudio-augmentations, with only the import changed.
    from ssl_min.augment import (ComposeMany, Delay, Gain, HighLowPass, Noise, PolarityInversion,
                                 RandomApply, RandomResizedCrop, Reverb)
    sr, n_samples = 22050, 59049
    transforms = [
        RandomResizedCrop(n_samples=n_samples),
        RandomApply([PolarityInversion()], p=0.8),
        RandomApply([Noise(min_snr=0.001, max_snr=0.005)], p=0.3),
        RandomApply([Gain()], p=0.2),
        HighLowPass(sample_rate=sr),
        RandomApply([Delay(sample_rate=sr)], p=0.5),
        RandomApply([Reverb(sample_rate=sr)], p=0.3),
    ]
    audio = 0.1 * torch.randn(1, 3 * sr)
    views = ComposeMany(transforms=transforms, num_augmented_samples=2)(audio)
    assert views.shape == (2, 1, n_samples) and torch.isfinite(views).all()
    assert not torch.equal(views[0], views[1])


def test_a_chain_never_writes_to_its_input_and_equals_one_copy_per_effect():
    """Compose lets its RandomApply effects write into the copy the first one made: the input
    stays as it was, and the output is what copying before every effect gives."""
    every_effect = A.build_chain(SR, p_polarity=0.5, p_noise=0.5, p_gain=0.5, p_filter=0.5, p_delay=0.5,
                                 p_pitch=0.5, p_reverb=0.5, n_samples=4000)
    chain = A.Compose([*every_effect.transforms, A.Reverb(SR), A.RandomApply([A.Gain()], p=0.5)])
    x = 0.1 * torch.randn(6, 1, 4000)
    before = x.clone()
    y = chain(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(x, before)
    g = torch.Generator().manual_seed(3)
    ref = x
    for t in chain.transforms:              # each effect on its own: RandomApply copies every time
        ref = t(ref, generator=g)
    assert torch.equal(y, ref)


@pytest.mark.parametrize("reuse", [1, 3])
def test_effects_reading_their_rows_themselves_equal_transforming_the_gathered_rows(reuse):
    """RandomApply hands the filters and Delay the whole batch and the chosen rows: they copy the
    rows straight into their own buffers, with the same draws and results as on x[rows]."""
    x = torch.randn(9, 2, 3000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    rows = torch.tensor([0, 2, 3, 7, 8])
    for effect in [A.HighLowPass(SR, reuse=reuse), A.LowPassFilter(SR, reuse=reuse), A.Delay(SR),
                   A.Reverb(SR, reuse=reuse), A.Compose([A.Delay(SR)])]:
        a = effect.transform_rows(x, rows, torch.Generator().manual_seed(1))
        b = effect.transform(x[rows], torch.Generator().manual_seed(1))
        assert torch.equal(a, b), type(effect).__name__


def test_chain_for_a_config_passes_every_field_to_its_effect():
    """train.py's chain (augment.chain_for): each probability, range and length the config sets
    lands in its effect, read back from the built modules."""
    from ssl_min.config import Config
    cfg = Config(sample_rate=16000, p_polarity=0.11, p_noise=0.12, min_snr=0.002, max_snr=0.003, p_gain=0.13,
                 p_filter=0.14, lowpass_min=3000.0, lowpass_max=5000.0, highpass_min=300.0, highpass_max=900.0,
                 p_delay=0.15, p_pitch=0.16, p_reverb=0.17, chunk_samples=4000, p_time_mask=0.18, time_mask_max=0.2,
                 effect_reuse=3)
    effects = A.chain_for(cfg).transforms
    assert [e.p for e in effects] == [0.11, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.18]
    noise, _, filt, delay, pitch, reverb, mask = (e.transforms.transforms[0] for e in effects[1:])
    assert (noise.min_snr, noise.max_snr) == (0.002, 0.003)
    assert (filt.sample_rate, filt.lp, filt.hp) == (16000, (3000.0, 5000.0), (300.0, 900.0))
    assert delay.sample_rate == pitch.sample_rate == reverb.sample_rate == 16000 and pitch.n_samples == 4000
    assert mask.max_fraction == 0.2
    assert filt.reuse == reverb.reuse == 3

"""The masked objective (ssl_min/objectives/masked.py, teachers.py, models/context.py, data/codebook.py):
teachers against torchaudio and pure tones, the loss reading masked frames only, the spans, the
codebook's seed, the encoder's readouts, and a masked run through probe, export and HEAR."""
import json
import math

import numpy as np
import pytest
import torch
import torchaudio

import probe
import train
from conftest import SR, TINY, write_tracks
from ssl_min import hear
from ssl_min.data import scan_folder
from ssl_min.data.codebook import fit_codebook
from ssl_min.embed import export
from ssl_min.visual.neighbors import build_page
from ssl_min.evaluate.blocks import BlockStats
from ssl_min.models import MaskedEncoder, MaskedModel, SampleCNN, build_encoder, load_encoder
from ssl_min.objectives.masked import Masked, masked_loss, mix_in_batch, span_mask
from ssl_min.objectives.teachers import N_MELS, Teachers, frame_windows

HOP = 243                                       # 4 blocks: one frame per 3^5 samples
MASKED = ["--objective", "masked", "--mask_tokens", "8", "--codebook_chunks", "32", "--context_heads", "2"]


def tone(freq, seconds=1.0, sr=SR):
    t = torch.arange(int(seconds * sr)) / sr
    return (0.5 * torch.sin(2 * math.pi * freq * t))[None, None]          # (1, 1, T)


# ---- the teachers ----

def test_log_mel_equals_torchaudios_mel_spectrogram_on_every_inner_frame():
    teachers = Teachers(SR, HOP)
    x = torch.randn(2, 1, 64 * HOP, generator=torch.Generator().manual_seed(0))
    features, _ = teachers(x)
    assert features.shape == (2, 64, N_MELS + 12)
    # torchaudio centres frame t at t * hop; ours at t * hop + hop // 2: shift the audio by hop // 2.
    reference = torchaudio.transforms.MelSpectrogram(SR, n_fft=teachers.n_fft, hop_length=HOP, n_mels=N_MELS,
                                                     power=2.0, center=True, pad_mode="reflect")
    ref = torch.log(reference(x[:, 0, HOP // 2:]) + 1e-6).transpose(1, 2)      # (2, frames, M)
    half = teachers.n_fft // 2
    inner = [t for t in range(64) if t * HOP + HOP // 2 - half >= 0 and t * HOP + HOP // 2 + half <= x.shape[-1]]
    assert len(inner) > 50
    torch.testing.assert_close(features[:, inner, :N_MELS], ref[:, inner], rtol=1e-4, atol=1e-4)


def test_frame_t_is_centred_on_its_encoder_frame():
    x = torch.zeros(1, 20 * HOP)
    for t in (3, 11):
        x[0, t * HOP + HOP // 2] = 1.0                                      # a click at frame t's centre
    windows = frame_windows(x, HOP, 1024) * torch.hann_window(1024)
    energy = windows.pow(2).sum(-1)[0]
    assert energy.shape == (20,) and energy[3] == energy.max() and energy[11] == energy.max()
    assert energy[3] > 10 * energy[5]


@pytest.mark.parametrize("freq,pitch_class,midi", [(440.0, 9, 69), (261.63, 0, 60), (1567.98, 7, 91)])
def test_chroma_and_semitone_bands_find_a_pure_tones_note(freq, pitch_class, midi):
    teachers = Teachers(SR, HOP)
    features, spectrum = teachers(tone(freq))
    chroma = features[0, 5:-5, N_MELS:]                                     # inner frames
    assert (chroma.argmax(-1) == pitch_class).all()
    assert torch.allclose(chroma.amax(-1), torch.ones(1))                   # scaled to a maximum of 1
    others = chroma.clone()
    others[:, [pitch_class, (pitch_class + 1) % 12, (pitch_class - 1) % 12]] = 0
    assert (chroma[:, [(pitch_class + 1) % 12, (pitch_class - 1) % 12]] < 0.3).all()   # the window's main lobe
    assert (others < 0.01).all()                                                     # nothing further away
    band = teachers.midi[spectrum[0, 5:-5].argmax(-1)]
    assert (band == midi).all()


def test_semitone_bands_start_where_a_band_spans_a_bin_and_a_silent_frame_is_finite():
    teachers = Teachers(SR, HOP)
    low = 440 * 2 ** ((teachers.midi[0] - 69) / 12)
    assert low * (2 ** (1 / 12) - 2 ** (-1 / 12)) >= 1.5 * SR / teachers.n_fft
    assert (teachers.bands.sum(0) > 0).all()                                 # every band catches a bin
    features, spectrum = teachers(torch.zeros(1, 1, 10 * HOP))
    assert torch.isfinite(features).all() and torch.isfinite(spectrum).all()


# ---- masking and the loss ----

def test_spans_mask_about_half_repeat_from_the_generator_and_too_long_a_span_is_refused():
    a = span_mask(64, 64, 0.8, 5, torch.Generator().manual_seed(1))
    b = span_mask(64, 64, 0.8, 5, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, span_mask(64, 64, 0.8, 5, torch.Generator().manual_seed(2)))
    share = a.float().mean().item()
    assert 0.4 < share < 0.65 and a.any(1).all()
    starts = a[:, 1:] & ~a[:, :-1]                                           # every run is >= one span long
    for row in a:
        runs = [len(r) for r in "".join("1" if v else "0" for v in row.tolist()).split("0") if r]
        assert min(runs) >= 5
    assert starts.any()
    with pytest.raises(ValueError, match="longer than the chunk"):
        span_mask(2, 4, 0.5, 5)


def test_the_loss_reads_masked_frames_only():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 12, 8, generator=g, requires_grad=True)
    predicted = torch.randn(3, 12, 6, generator=g, requires_grad=True)
    tokens, spectrum = torch.randint(8, (3, 12), generator=g), torch.randn(3, 12, 6, generator=g)
    mask = span_mask(3, 12, 0.5, 3, g)
    loss = masked_loss(logits, tokens, predicted, spectrum, mask, 1.0, 0.5)
    # A reference: the two terms written out over the masked positions.
    ce = torch.stack([-torch.log_softmax(logits[n, t], -1)[tokens[n, t]] for n, t in mask.nonzero()]).mean()
    mse = torch.stack([(predicted[n, t] - spectrum[n, t]).pow(2).mean() for n, t in mask.nonzero()]).mean()
    torch.testing.assert_close(loss, ce + 0.5 * mse)
    other_tokens, other_spectrum = tokens.clone(), spectrum.clone()
    other_tokens[~mask] = (tokens[~mask] + 1) % 8                           # every unmasked target changed
    other_spectrum[~mask] += 10.0
    assert torch.equal(masked_loss(logits, other_tokens, predicted, other_spectrum, mask, 1.0, 0.5), loss)
    n, t = mask.nonzero()[0]
    other_tokens[n, t] = (tokens[n, t] + 1) % 8                             # ... and one masked target
    assert not torch.equal(masked_loss(logits, other_tokens, predicted, other_spectrum, mask, 1.0, 0.5), loss)
    gl, gp = torch.autograd.grad(loss, (logits, predicted))
    assert (gl[~mask] == 0).all() and (gp[~mask] == 0).all() and gl[mask].abs().sum() > 0


def test_the_mixture_adds_the_next_clip_at_5_to_15_db_below_and_only_when_drawn():
    x = torch.randn(6, 1, 500, generator=torch.Generator().manual_seed(0))
    mixed = mix_in_batch(x, 1.0, torch.Generator().manual_seed(0))
    added = mixed - x
    ratio_db = 10 * torch.log10(x.pow(2).mean((1, 2)) / added.pow(2).mean((1, 2)))
    assert ((ratio_db > 5 - 1e-3) & (ratio_db < 15 + 1e-3)).all()
    cos = torch.nn.functional.cosine_similarity(added.flatten(1), x.roll(1, 0).flatten(1))
    assert torch.allclose(cos, torch.ones(6), atol=1e-5)
    assert torch.equal(mix_in_batch(x, 0.0, torch.Generator().manual_seed(0)), x)


# ---- the encoder ----

def test_the_mask_replaces_the_masked_frames_and_the_readouts_agree():
    torch.manual_seed(0)
    encoder = MaskedEncoder(SampleCNN(4, 0.125, "mean"), layers=2, heads=2).eval()
    x = torch.randn(2, 1, 20 * HOP)
    with torch.no_grad():
        z = encoder.cnn.frames(x)
        mask = torch.zeros(2, 20, dtype=torch.bool)
        mask[:, 4:9] = True
        masked = encoder.context(z, mask)
        z2 = z.clone()
        z2[:, :, 4:9] = torch.randn_like(z2[:, :, 4:9])                     # what hides under the mask
        torch.testing.assert_close(encoder.context(z2, mask), masked)        # ... is never read
        assert not torch.allclose(encoder.context(z2), encoder.context(z))
        blocks = encoder.block_outputs(x)
        assert len(blocks) == 4 + 2 + 2 and blocks[-1].shape == (2, encoder.out_dim, 20)
        torch.testing.assert_close(blocks[-1].mean(-1), encoder(x))
        stats = BlockStats(encoder)(x)
        torch.testing.assert_close(stats[:, BlockStats(encoder).output_columns(20 * HOP)], encoder(x))
        torch.testing.assert_close(MaskedModel(encoder)(x), encoder.context(z))


def test_codebook_centroids_are_reproducible_from_the_seed(tmp_path):
    write_tracks(tmp_path / "a", 6, seconds=2.0)
    tracks = scan_folder(tmp_path / "a", SR)[0]
    teachers = Teachers(SR, 81, n_tokens=8)
    one, two = (fit_codebook(tracks, teachers, 81 * 24, seed=3, n_chunks=40) for _ in range(2))
    other = fit_codebook(tracks, teachers, 81 * 24, seed=4, n_chunks=40)
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert not torch.equal(one["centroids"], other["centroids"])
    assert one["centroids"].shape == (8, N_MELS + 12) and one["spectrum_mean"].shape == (teachers.n_bands,)
    teachers.set_codebook(**one)
    features, _ = teachers(torch.randn(2, 1, 81 * 24))
    tokens = teachers.tokens(features)
    f = (features - one["feature_mean"]) / one["feature_std"]
    naive = torch.cdist(f.flatten(0, 1).double(), one["centroids"].double()).argmin(-1).view(2, 24)
    assert torch.equal(tokens, naive)


def test_an_unfitted_codebook_is_refused():
    objective = Masked(16, SR, 81, n_tokens=4)
    model = MaskedModel(build_encoder(3, 0.125, "mean", context={"layers": 1, "heads": 2}))
    with pytest.raises(RuntimeError, match="never fitted"):
        objective(model, torch.randn(2, 1, 81 * 12))


# ---- a run, end to end ----

def test_a_masked_run_is_monitored_saves_its_codebook_and_is_probed_exported_heard_and_paged(audio_dir, tmp_path):
    out, labeled = tmp_path / "run", tutorial(tmp_path)
    train.main(["--data", str(audio_dir), "--out", str(out), *TINY, *MASKED, "--max_steps", "4",
                "--monitor", str(labeled), "--monitor_every", "2"])
    readings = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in readings if "knn_pr_auc" in r] == [0, 2, 4]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    book = torch.load(out / "codebook.pt", weights_only=True)
    assert torch.equal(ckpt["objective"]["teachers.centroids"], book["centroids"])
    assert bool(ckpt["objective"]["teachers.fitted"])
    encoder, info = load_encoder(out / "checkpoint.pt")
    assert isinstance(encoder, MaskedEncoder) and info["context"] == {"layers": 2, "heads": 2}
    report = probe.main(["--checkpoint", str(out / "checkpoint.pt"), "--data", str(labeled),
                         "--num_workers", "0", "--conv", "reference"])
    assert set(report["results"]) == {"pretrained", "random_init", "mfcc"}
    assert all(0 <= r["pr_auc"] <= 1 for r in report["results"].values())
    model = hear.load_model(str(out / "checkpoint.pt"), conv="reference", features="blocks")
    audio = torch.randn(2, 3000)
    scene = hear.get_scene_embeddings(audio, model)
    assert scene.shape == (2, model.scene_embedding_size) and torch.isfinite(scene).all()
    done, _, _ = export(out / "checkpoint.pt", audio_dir, tmp_path / "emb", features="blocks", num_workers=0)
    dim = BlockStats(encoder)(torch.zeros(2, 1, info["chunk_samples"])).shape[1]
    assert done == 10 and np.load(tmp_path / "emb" / "track000.wav.npy").shape == (dim,)
    stats = build_page(out / "checkpoint.pt", audio_dir, tmp_path / "page", k=2, queries=3, conv="reference",
                       num_workers=0)
    assert stats["queries"] == 3 and (tmp_path / "page" / "index.html").exists()


def tutorial(root):
    from test_probe import tutorial_layout
    return tutorial_layout(root / "labeled", 12, splits=("train", "valid", "test"))


def test_a_chunk_too_short_for_two_spans_is_refused(audio_dir, tmp_path):
    with pytest.raises(SystemExit, match="2 x mask_span"):
        train.main(["--data", str(audio_dir), "--out", str(tmp_path / "r"), *TINY, *MASKED, "--chunk_samples", "500"])

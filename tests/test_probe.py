"""probe.py: end to end with three rows, the head against scikit-learn, MFCCs against a direct
computation, frozen-extractor proofs, task detection, small and degenerate sets."""
import csv
import json

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn as nn
import torchaudio
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score

import probe
import train
from conftest import SR, TINY
from ssl_min.data.labeled import LabeledSet, carve_validation, load_labeled, stratified_split
from ssl_min.evaluate.linear_probe import (L2_GRID, chunk_loss, fit_logistic, metrics, select_head,
                                           standardise, track_scores)
from ssl_min.evaluate.mfcc import MFCCStats, mfcc_settings


def tone_file(path, freq, seconds=1.0, seed=0):
    """A tone plus a little noise: low (<= 300 Hz) or high (>= 1500 Hz) tracks are easy to tell."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.4 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), SR)


def tutorial_layout(root, n_per_split, splits=("train", "test"), one_hot=False):
    """Tags 'high' (a 1.5-2.5 kHz tone) / 'low' (150-300 Hz), and 'all' on every track."""
    rng = np.random.default_rng(1)
    for split in splits:
        (root / split).mkdir(parents=True)
        with open(root / split / "annotations.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["mp3_path", "high", "low"] + ([] if one_hot else ["all"]))
            for i in range(n_per_split):
                high = i % 2
                freq = rng.uniform(1500, 2500) if high else rng.uniform(150, 300)
                tone_file(root / split / "audio" / f"{split}{i:03d}.wav", freq, seed=i)
                w.writerow([f"audio/{split}{i:03d}.wav", high, 1 - high] + ([] if one_hot else [1]))
    return root


@pytest.fixture
def checkpoint(audio_dir, tmp_path):
    run = tmp_path / "run"
    train.main(["--data", str(audio_dir), "--out", str(run), *TINY, "--max_steps", "10"])   # one epoch: best.pt too
    return run / "checkpoint.pt"


def test_end_to_end_three_rows_chosen_heads_and_a_named_result_file(checkpoint, tmp_path, capsys):
    data = tutorial_layout(tmp_path / "labeled", 24)
    report = probe.main(["--checkpoint", str(checkpoint), "--data", str(data), "--num_workers", "0"])
    out = capsys.readouterr().out
    assert "carved" in out and "re-estimated" in out
    assert report == json.loads((checkpoint.parent / "probe_checkpoint.json").read_text())
    assert (checkpoint.parent / "probe_checkpoint.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")   # its bars
    assert set(report["results"]) == {"pretrained", "random_init", "mfcc"}
    for r in report["results"].values():
        assert r["tags_left_out"] == ["all"] and r["tags_scored"] == 2       # 'all' has no negative
        assert r["head"]["l2"] in [float(k) for k in r["head"]["grid"]]
        assert r["head"]["criterion"] == "valid macro PR-AUC"
    # High vs low tones: MFCCs separate them perfectly, so must a head chosen on validation.
    assert report["results"]["mfcc"]["roc_auc"] == 1.0
    assert report["tracks"]["train"] + report["tracks"]["valid"] == 24
    # The same run on best.pt writes its own file (both results kept).
    best = checkpoint.parent / "best.pt"
    probe.main(["--checkpoint", str(best), "--data", str(data), "--num_workers", "0", "--rows", "mfcc"])
    assert (checkpoint.parent / "probe_best.json").exists() and (checkpoint.parent / "probe_checkpoint.json").exists()


def test_block_features_are_probed_and_cached_apart_from_the_output(checkpoint, tmp_path):
    data = tutorial_layout(tmp_path / "labeled", 16)
    rows = ["--rows", "pretrained,random_init", "--num_workers", "0", "--conv", "fast"]   # fixed: keys name it
    out = probe.main(["--checkpoint", str(checkpoint), "--data", str(data), *rows, "--features", "output"])
    cache = checkpoint.parent / "embeddings"
    n_output = len(list(cache.glob("*.pt")))
    blocks = probe.main(["--checkpoint", str(checkpoint), "--data", str(data), *rows, "--features", "blocks",
                         "--out", str(tmp_path / "blocks.json")])
    assert len(list(cache.glob("*.pt"))) == 2 * n_output          # new features, not the output's reread
    assert blocks["config"]["features"] == "blocks" and out["config"]["features"] == "output"
    for name in ("pretrained", "random_init"):
        assert np.isfinite(blocks["results"][name]["roc_auc"])
    dims = [torch.load(p, weights_only=True)["train"][0].shape[1] for p in cache.glob("*.pt")]
    assert sorted(set(dims))[0] < sorted(set(dims))[-1]           # the readout is wider than the output
    # auto (the default) reads both from the blocks' features: nothing new extracted, a choice per row
    auto = probe.main(["--checkpoint", str(checkpoint), "--data", str(data), *rows, "--out", str(tmp_path / "a.json")])
    assert len(list(cache.glob("*.pt"))) == 2 * n_output and auto["config"]["features"] == "auto"
    for name in ("pretrained", "random_init"):
        r = auto["results"][name]
        assert r["readout"]["chosen"] in ("output", "blocks") and set(r["readout"]["valid"]) == {"output", "blocks"}
        assert r["head"]["valid_score"] == max(r["readout"]["valid"].values())
        assert r["roc_auc"] == {"output": out, "blocks": blocks}[r["readout"]["chosen"]]["results"][name]["roc_auc"]


def test_one_hot_columns_are_a_multiclass_task_with_comparable_columns(checkpoint, tmp_path):
    data = tutorial_layout(tmp_path / "onehot", 16, splits=("train", "valid", "test"), one_hot=True)
    sets = load_labeled(data, SR)
    assert sets["train"].task == "multiclass" and sets["train"].names == ["high", "low"]
    report = probe.main(["--checkpoint", str(checkpoint), "--data", str(data), "--num_workers", "0", "--rows", "mfcc"])
    r = report["results"]["mfcc"]
    assert report["task"] == "multiclass" and r["accuracy"] == 1.0 and r["macro_f1"] == 1.0
    assert r["roc_auc"] == 1.0 and r["pr_auc"] == 1.0


def test_a_four_track_class_folder_says_what_it_needs_in_one_line(checkpoint, tmp_path, capsys):
    for i, c in enumerate(["a", "a", "b", "b"]):
        tone_file(tmp_path / "tiny" / c / f"{i}.wav", 200 + 100 * i)
    with pytest.raises(SystemExit) as e:
        probe.main(["--checkpoint", str(checkpoint), "--data", str(tmp_path / "tiny"), "--num_workers", "0"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "need at least 1 track in each of train, valid and test" in err


def test_a_twelve_track_tutorial_layout_gives_a_result(checkpoint, tmp_path):
    data = tutorial_layout(tmp_path / "twelve", 12)
    report = probe.main(["--checkpoint", str(checkpoint), "--data", str(data), "--num_workers", "0", "--rows", "mfcc"])
    r = report["results"]["mfcc"]
    assert report["tracks"]["valid"] >= 2 and np.isfinite(r["head"]["valid_score"]) and np.isfinite(r["roc_auc"])


def test_the_carved_validation_split_is_stratified_and_deterministic(tmp_path):
    sets = load_labeled(tutorial_layout(tmp_path / "d", 40), SR)
    carved = carve_validation(sets["train"])
    train_paths, valid_paths = ({t.path for t in carved[s].tracks} for s in ("train", "valid"))
    assert not train_paths & valid_paths and train_paths | valid_paths == {t.path for t in sets["train"].tracks}
    assert carved["valid"].targets[:, 0].sum() == 2 and carved["valid"].targets[:, 1].sum() == 2   # 2 per tag
    assert {t.path for t in carve_validation(sets["train"])["valid"].tracks} == valid_paths


@pytest.mark.parametrize("n", [2, 3, 5, 10, 31])
def test_stratified_split_gives_every_split_a_track_when_it_can(n):
    ls = LabeledSet([type("T", (), {"path": f"t{i}.wav"})() for i in range(n)], np.zeros(n, dtype=int), ["c"],
                    "multiclass")
    sizes = [len(s.tracks) for s in stratified_split(ls, (0.7, 0.1, 0.2)).values()]
    assert sum(sizes) == n and sizes[0] >= 1 and (min(sizes) >= 1 if n >= 3 else sizes[2] == 1)


# ---- the head: standardised features, L2 chosen on validation only, equal to scikit-learn ----

def blobs(n, d=6, k=3, seed=0, multilabel=False):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1.5, (k, d))
    y = rng.integers(0, k, n)
    x = centers[y] + rng.normal(0, 1, (n, d))
    if multilabel:
        y = np.stack([y == 0, (y == 1) | (x[:, 0] > 0), rng.integers(0, 2, n) == 1], 1).astype(float)
    return torch.tensor(x), y


@pytest.mark.parametrize("l2", [1e-3, 1e-1])
def test_multiclass_head_equals_sklearn_logistic_regression(l2):
    x, y = blobs(300)
    head, gradient = fit_logistic(x, y, "multiclass", l2, 3)
    assert gradient < 1e-6
    ref = LogisticRegression(C=1 / (l2 * len(y)), tol=1e-10, max_iter=10000).fit(x.numpy(), y)
    ours = torch.softmax(head(x), 1).detach().numpy()
    np.testing.assert_allclose(ours, ref.predict_proba(x.numpy()), atol=1e-5)


def test_multilabel_head_equals_one_sklearn_logistic_regression_per_tag():
    x, y = blobs(300, multilabel=True)
    l2 = 1e-2
    head, gradient = fit_logistic(x, y, "multilabel", l2, 3)
    assert gradient < 1e-6
    for k in range(3):
        ref = LogisticRegression(C=1 / (l2 * len(y)), tol=1e-10, max_iter=10000).fit(x.numpy(), y[:, k])
        ours = torch.sigmoid(head(x)[:, k]).detach().numpy()
        np.testing.assert_allclose(ours, ref.predict_proba(x.numpy())[:, 1], atol=1e-5)


def test_a_warm_start_from_another_strength_reaches_the_same_optimum():
    x, y = blobs(300, multilabel=True)
    cold, _ = fit_logistic(x, y, "multilabel", 1e-3, 3)
    start, _ = fit_logistic(x, y, "multilabel", 1.0, 3)
    warm, gradient = fit_logistic(x, y, "multilabel", 1e-3, 3, start=start)
    assert gradient < 1e-6
    np.testing.assert_allclose(torch.sigmoid(warm(x)).detach(), torch.sigmoid(cold(x)).detach(), atol=1e-5)


def probe_like(seed, n_tracks, d=48, chunks=4, multilabel=True):
    """Features as a frozen encoder gives them: correlated (a low-rank mix), several chunks per
    track, tags that a linear head separates almost perfectly at the weakest L2 strengths."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(0, 1, (8, d)) + 0.2 * rng.normal(0, 1, (d, d))[:8]
    latent = rng.normal(0, 1, (n_tracks, 8))
    x = np.repeat(latent, chunks, 0) @ mix + 0.7 * rng.normal(0, 1, (n_tracks * chunks, d))
    score = latent @ rng.normal(0, 1, (8, 4))
    y = (score > 0.3).astype(float) if multilabel else score.argmax(1)
    return torch.tensor(x), torch.arange(n_tracks).repeat_interleave(chunks), y


def exact_head(x, y, task, l2, n_out):
    """scikit-learn's Newton solver (exact Hessian) on the same objective -> nn.Linear."""
    c, x = 1 / (l2 * len(x)), x.double().numpy()
    fits = ([LogisticRegression(C=c, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(x, y[:, k])
             for k in range(n_out)] if task == "multilabel" else
            [LogisticRegression(C=c, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(x, y)])
    head = nn.Linear(x.shape[1], n_out).double()
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(np.concatenate([f.coef_ for f in fits])))
        head.bias.copy_(torch.from_numpy(np.concatenate([f.intercept_ for f in fits])))
    return head


@pytest.mark.parametrize("task", ["multilabel", "multiclass"])
def test_the_chosen_head_and_its_metrics_match_the_exact_optimum_within_1e_3(task):
    """select_head (warm-started, preconditioned, capped L-BFGS) against the exact optimum at every
    L2 strength, chosen by the same rule: the same strength, validation and test scores within 1e-3."""
    (xtr, otr, ytr), (xv, ov, yv), (xt, ot, yt) = (probe_like(s, n, multilabel=task == "multilabel")
                                                   for s, n in ((0, 150), (1, 60), (2, 60)))
    xtr, xv, xt = standardise(xtr, xv, xt)
    names = ["a", "b", "c", "d"]
    head, chosen = select_head((xtr, otr, ytr), (xv, ov, yv), names, task)
    chunk_ytr, chunk_yv = np.asarray(ytr)[otr.numpy()], np.asarray(yv)[ov.numpy()]
    exact = {}
    for l2 in L2_GRID:
        h = exact_head(xtr, chunk_ytr, task, l2, 4)
        exact[l2] = (metrics(yv, track_scores(h, xv, ov, len(yv), task), names, task)[0]["pr_auc"],
                     -chunk_loss(h, xv, chunk_yv, task), h)
        assert chosen["grid"][str(l2)] == pytest.approx(exact[l2][0], abs=1e-3)
    best = max(exact, key=lambda l2: exact[l2][:2])
    assert chosen["l2"] == best
    ours, ref = (metrics(yt, track_scores(h, xt, ot, len(yt), task), names, task)[0] for h in (head, exact[best][2]))
    for k in ours.keys() & {"accuracy", "macro_f1", "roc_auc", "pr_auc"}:
        assert ours[k] == pytest.approx(ref[k], abs=1e-3), k
    assert min(chosen["gradient"].values()) < 1e-6


def split_features(seed=0, multilabel=True, n=240):
    x, y = blobs(n, seed=seed, multilabel=multilabel)
    owner = torch.arange(n) // 2                                  # two chunks per track
    ytrack = y[::2]
    return x, owner, ytrack


def test_the_test_split_cannot_change_the_chosen_head():
    (xtr, otr, ytr), (xv, ov, yv), (xt, ot, yt) = (split_features(s) for s in (0, 1, 2))
    xtr, xv, xt = standardise(xtr.float(), xv.float(), xt.float())
    names = ["a", "b", "c"]
    head, chosen = select_head((xtr, otr, ytr), (xv, ov, yv), names, "multilabel")
    # Nothing of the test split enters select_head; permuting its labels moves only the test metric.
    perm = np.random.default_rng(0).permutation(len(yt))
    scores = track_scores(head, xt, ot, len(yt), "multilabel")
    a, b = metrics(yt, scores, names, "multilabel")[0], metrics(yt[perm], scores, names, "multilabel")[0]
    head2, chosen2 = select_head((xtr, otr, ytr), (xv, ov, yv), names, "multilabel")
    assert chosen == chosen2 and a["pr_auc"] != b["pr_auc"]
    assert chosen["l2"] == max(chosen["grid"], key=lambda k: chosen["grid"][k]) or \
        chosen["grid"][str(chosen["l2"])] == max(chosen["grid"].values())


def test_a_validation_split_missing_classes_falls_back_to_its_loss_never_nan():
    (xtr, otr, ytr), (xv, ov, yv) = split_features(0, multilabel=False), split_features(1, multilabel=False)
    keep = np.nonzero(yv == 0)[0]                                 # valid holds one class only
    mask = torch.isin(ov, torch.tensor(keep))
    xv, ov = xv[mask], torch.unique(ov[mask], return_inverse=True)[1]
    head, chosen = select_head((xtr.float(), otr, ytr), (xv.float(), ov, yv[keep]), ["a", "b", "c"], "multiclass")
    assert chosen["criterion"].startswith("valid loss") and np.isfinite(chosen["valid_score"])
    assert all(np.isfinite(v) for v in chosen["grid"].values())


def test_metrics_match_sklearn_for_multiclass_one_vs_rest():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 50)
    scores = rng.dirichlet(np.ones(3), 50)
    m = metrics(y, scores, ["a", "b", "c"], "multiclass")[0]
    onehot = np.eye(3)[y]
    assert m["roc_auc"] == pytest.approx(np.mean([roc_auc_score(onehot[:, k], scores[:, k]) for k in range(3)]))
    assert m["pr_auc"] == pytest.approx(np.mean([average_precision_score(onehot[:, k], scores[:, k]) for k in range(3)]))


# ---- MFCC statistics ----

def test_mfcc_statistics_equal_a_direct_computation_and_do_not_depend_on_the_batch():
    x = torch.randn(3, 1, 16000) * torch.tensor([1.0, 1e-3, 1e-6])[:, None, None]
    feats = MFCCStats(16000)(x)
    for i in range(3):
        c = torchaudio.transforms.MFCC(16000, n_mfcc=40, melkwargs=mfcc_settings(16000))(x[i, 0])   # (40, frames)
        d1 = torchaudio.functional.compute_deltas(c)
        d2 = torchaudio.functional.compute_deltas(d1)
        f = np.concatenate([c.numpy(), d1.numpy(), d2.numpy()])
        direct = np.concatenate([f.mean(1), f.std(1)])
        np.testing.assert_allclose(feats[i].numpy(), direct, rtol=1e-4, atol=1e-3)
    assert mfcc_settings(22050) == {"win_length": 2048, "n_fft": 2048, "hop_length": 512, "n_mels": 128}


# ---- frozen extractors ----

class LevelEncoder(nn.Module):
    """Stand-in encoder with BatchNorm: features = [RMS, random projections of the waveform]."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(500, 7)
        self.bn = nn.BatchNorm1d(8)

    def forward(self, x):
        x = x.flatten(1)
        return self.bn(torch.cat([x.pow(2).mean(1, keepdim=True).sqrt(), self.proj(x)], dim=1))


class FakeTrack:
    def __init__(self, path, audio):
        self.path, self.audio = path, audio

    def read_all(self):
        return self.audio


def fake_sets(n_tracks, shuffle, seed=0):
    """Tag 0: the track is loud (planted, linear in the RMS feature). Tag 1: a coin flip."""
    rng = np.random.default_rng(seed)
    out = {}
    for split in ("train", "valid", "test"):
        loud = rng.integers(0, 2, n_tracks)
        tracks = [FakeTrack(f"{split}{i}", torch.randn(1500) * (1.0 if lo else 0.3)) for i, lo in enumerate(loud)]
        targets = np.stack([loud, rng.integers(0, 2, n_tracks)], 1)
        if shuffle:
            targets = targets[rng.permutation(n_tracks)]
        out[split] = LabeledSet(tracks, targets, ["loud", "coin"], "multilabel")
    return out


def probe_fake(encoder, sets, tmp_path, key):
    feats = probe.frozen_features({"enc": encoder}, {"enc": key}, sets, 500, torch.device("cpu"), tmp_path)
    return probe.probe_features(feats["enc"], sets, probe.parser.parse_args(["--checkpoint", "x", "--data", "y"]))


def test_planted_feature_gives_auc_near_1_and_shuffled_labels_near_half(tmp_path):
    r = probe_fake(LevelEncoder(), fake_sets(150, shuffle=False), tmp_path, "planted")
    assert r["per_tag"]["loud"]["roc_auc"] > 0.98 and abs(r["per_tag"]["coin"]["roc_auc"] - 0.5) < 0.15
    r = probe_fake(LevelEncoder(), fake_sets(150, shuffle=True), tmp_path, "shuffled")
    assert abs(r["roc_auc"] - 0.5) < 0.1


def test_extractors_are_frozen_and_the_check_can_fail(tmp_path, monkeypatch):
    enc = LevelEncoder()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    probe_fake(enc, fake_sets(20, False), tmp_path, "frozen")
    assert not any(p.requires_grad for p in enc.parameters()) and not enc.training
    assert all(torch.equal(v, before[k]) for k, v in enc.state_dict().items())
    # Sabotage: an encoder left in train mode moves its BatchNorm statistics while embedding.
    enc2 = LevelEncoder()
    monkeypatch.setattr(enc2, "eval", lambda: enc2)
    with pytest.raises(AssertionError, match="changed during the probe"):
        probe_fake(enc2, fake_sets(20, False), tmp_path, "sabotaged")


def test_random_init_batchnorm_statistics_are_measured_on_audio():
    from ssl_min.evaluate.extract import recalibrate_batchnorm
    from ssl_min.models import build_model
    enc = build_model(3, 0.125, "mean").encoder
    tracks = [FakeTrack(f"t{i}", 0.5 * torch.randn(4000)) for i in range(8)]
    n = recalibrate_batchnorm(enc, tracks, 2000, torch.device("cpu"))
    bn = enc.net[1]
    assert n == 16 and not enc.training and bn.momentum == 0.1
    # The first BatchNorm sees the stem's output: its running mean is that output's mean, measured.
    with torch.no_grad():
        stem = enc.net[0](torch.stack([t.audio[:2000] for t in tracks] + [t.audio[2000:] for t in tracks])[:, None])
    assert torch.allclose(bn.running_mean, stem.mean((0, 2)), atol=1e-5)
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))

"""probe.py: end to end on a 2-step checkpoint; frozen-encoder proofs; planted and shuffled labels."""
import csv
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

import probe
import train
from conftest import TINY, write_tracks
from ssl_min.data import LabeledSet, load_labeled, split_by_track

ARGS = SimpleNamespace(mlp=False, lr=1e-2, weight_decay=0.0, batch_size=64, max_epochs=100, patience=20, seed=0)
CFG = {"sample_rate": 8000, "chunk_samples": 500}


def labeled_dir(root, splits=("train", "valid", "test"), n=12):
    """Tutorial layout; tag 'odd' is set on every other track, 'all' on every track."""
    for split in splits:
        paths = write_tracks(root / split / "audio", n, seed={"train": 1, "valid": 2, "test": 3}[split])
        with open(root / split / "annotations.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["mp3_path", "odd", "even", "all"])
            for i, p in enumerate(paths):
                w.writerow([f"audio/{p.name}", i % 2, 1 - i % 2, 1])
    return root


def test_probe_end_to_end_on_a_two_step_checkpoint(audio_dir, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    train.main(["--data", str(audio_dir), "--out", str(run), *TINY, "--max_steps", "2"])
    data = labeled_dir(tmp_path / "labeled", splits=("train", "test"))
    monkeypatch.setattr(sys, "argv", ["probe.py", "--checkpoint", str(run / "checkpoint.pt"), "--data", str(data),
                                      "--max_epochs", "5"])
    probe.main()
    out = capsys.readouterr().out
    assert "carved" in out and "pretrained" in out and "random_init" in out
    report = json.loads((run / "probe.json").read_text())
    for name in ("pretrained", "random_init"):
        r = report["results"][name]
        assert 0 <= r["roc_auc"] <= 1 and 0 <= r["pr_auc"] <= 1 and 0 <= r["valid_pr_auc"] <= 1
        assert r["tags_left_out"] == ["all"] and r["tags_scored"] == 2      # 'all' has no negative
    assert report["tracks"]["train"] + report["tracks"]["valid"] == 12 and "carved" in report["notes"][0]
    assert list(Path(run / "embeddings").glob("*.pt"))                       # cached for the next run


def test_missing_validation_split_is_carved_by_track(tmp_path):
    sets = load_labeled(labeled_dir(tmp_path / "d", splits=("train", "test"), n=40), 8000)
    carved = split_by_track(sets["train"], (0.9, 0.1))
    train_paths = {t.path for t in carved["train"].tracks}
    valid_paths = {t.path for t in carved["valid"].tracks}
    assert valid_paths and not train_paths & valid_paths
    assert train_paths | valid_paths == {t.path for t in sets["train"].tracks}
    again = split_by_track(sets["train"], (0.9, 0.1))                       # deterministic
    assert {t.path for t in again["valid"].tracks} == valid_paths


class FakeTrack:
    """A labeled track held in memory."""

    def __init__(self, path, audio):
        self.path, self.audio = path, audio

    def read_all(self):
        return self.audio


class LevelEncoder(nn.Module):
    """Stand-in encoder with BatchNorm: features = [RMS, random projections of the waveform]."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(500, 7)
        self.bn = nn.BatchNorm1d(8)

    def forward(self, x):
        x = x.flatten(1)
        return self.bn(torch.cat([x.pow(2).mean(1, keepdim=True).sqrt(), self.proj(x)], dim=1))


def fake_sets(n_tracks, shuffle, seed=0):
    """Tag 0: the track is loud (planted, linear in the RMS feature). Tag 1: a coin flip."""
    rng = np.random.default_rng(seed)
    out = {}
    for split in ("train", "valid", "test"):
        loud = rng.integers(0, 2, n_tracks)
        tracks = [FakeTrack(f"{split}{i}", torch.randn(1500) * (1.0 if l else 0.3)) for i, l in enumerate(loud)]
        targets = np.stack([loud, rng.integers(0, 2, n_tracks)], 1)
        if shuffle:
            targets = targets[rng.permutation(n_tracks)]
        out[split] = LabeledSet(tracks, targets, ["loud", "coin"], "multilabel")
    return out


def test_planted_feature_gives_auc_near_1(tmp_path):
    r = probe.probe(LevelEncoder(), fake_sets(150, shuffle=False), CFG, ARGS, "cpu", "planted", tmp_path)
    assert r["per_tag"]["loud"]["roc_auc"] > 0.98
    assert abs(r["per_tag"]["coin"]["roc_auc"] - 0.5) < 0.15


def test_shuffled_labels_give_auc_near_half(tmp_path):
    r = probe.probe(LevelEncoder(), fake_sets(150, shuffle=True), CFG, ARGS, "cpu", "shuffled", tmp_path)
    assert abs(r["roc_auc"] - 0.5) < 0.1


def test_encoder_is_frozen_and_the_check_can_fail(tmp_path, monkeypatch):
    enc = LevelEncoder()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    probe.probe(enc, fake_sets(20, False), CFG, ARGS, "cpu", "frozen", tmp_path)
    assert not any(p.requires_grad for p in enc.parameters()) and not enc.training
    assert all(torch.equal(v, before[k]) for k, v in enc.state_dict().items())
    # Sabotage: an encoder left in train mode moves its BatchNorm statistics while embedding.
    enc2 = LevelEncoder()
    monkeypatch.setattr(enc2, "eval", lambda: enc2)
    with pytest.raises(AssertionError, match="changed during the probe"):
        probe.probe(enc2, fake_sets(20, False), CFG, ARGS, "cpu", "sabotaged", tmp_path)


def test_only_the_head_trains(tmp_path, monkeypatch):
    enc = LevelEncoder()
    monkeypatch.setattr(enc, "requires_grad_", lambda flag: enc)             # "forget" to freeze
    with pytest.raises(AssertionError, match="only the head may train"):
        probe.probe(enc, fake_sets(20, False), CFG, ARGS, "cpu", "unfrozen", tmp_path)

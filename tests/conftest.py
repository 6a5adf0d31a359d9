"""Shared fixtures: small generated audio, so tests need no dataset download."""
import random

import numpy as np
import pytest
import soundfile as sf
import torch

SR = 8000


def write_tracks(root, n, seconds=1.0, sr=SR, seed=0):
    """n short tracks of a few random partials each; returns their paths."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    paths = []
    for i in range(n):
        f = rng.uniform(100, 1500, 3)
        x = sum(np.sin(2 * np.pi * fk * t) for fk in f) / 3 + 0.05 * rng.standard_normal(len(t))
        paths.append(root / f"track{i:03d}.wav")
        sf.write(paths[-1], (0.5 * x).astype(np.float32), sr)
    return paths


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same global random state (torch, numpy, random): a draw a test
    forgot to seed still gives the same numbers on every run, so no test can flake on luck."""
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)


@pytest.fixture(autouse=True)
def own_choices(tmp_path, monkeypatch):
    """Each test measures `auto` choices afresh (runtime/remembered.py writes them to this file, not
    to ~/.cache; children inherit it)."""
    monkeypatch.setenv("SSL_MIN_CHOICES", str(tmp_path / "choices.json"))


@pytest.fixture
def audio_dir(tmp_path):
    write_tracks(tmp_path / "audio", 10)
    return tmp_path / "audio"


# The smallest model that still runs the real code path (about 1 ms per step on a CPU).
TINY = ["--sample_rate", str(SR), "--n_blocks", "3", "--width", "0.125", "--pool", "mean",
        "--chunk_samples", "2000", "--batch_size", "4", "--num_workers", "0", "--log_every", "1",
        "--lowpass_min", "1500", "--lowpass_max", "3500",   # cutoffs below the 4 kHz Nyquist frequency
        "--conv", "fast"]   # fixed, not measured: two runs that a test compares must run the same formulation

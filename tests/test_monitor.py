"""The kNN monitor (train.py --monitor): the classifier against a naive loop, modes and random
streams left as they were (a run with the monitor trains exactly as one without), resume."""
import json
import math

import pytest
import torch

import train
from conftest import TINY
from ssl_min.evaluate.knn import knn_scores
from ssl_min.evaluate.monitor import KNNMonitor
from ssl_min.models import SampleCNN
from test_probe import tutorial_layout


def naive_knn(train_x, train_y, query_x, k, temperature):
    out = []
    for q in query_x.tolist():
        sims = []
        for i, t in enumerate(train_x.tolist()):
            dot = sum(a * b for a, b in zip(q, t))
            sims.append((dot / math.sqrt(sum(a * a for a in q)) / math.sqrt(sum(b * b for b in t)), i))
        top = sorted(sims, reverse=True)[:k]
        w = [math.exp(s / temperature) for s, _ in top]
        out.append([sum(wi * train_y[i][c] for wi, (_, i) in zip(w, top)) / sum(w) for c in range(len(train_y[0]))])
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("k", [1, 3, 50])
def test_knn_equals_a_naive_loop_for_classes_and_tags(k):
    g = torch.Generator().manual_seed(0)
    train_x, query_x = torch.randn(12, 5, generator=g), torch.randn(4, 5, generator=g)
    classes = torch.nn.functional.one_hot(torch.randint(3, (12,), generator=g), 3).double()
    tags = (torch.rand(12, 4, generator=g) < 0.4).double()
    for y in (classes, tags):
        got = knn_scores(train_x, y, query_x, k=k, temperature=0.1)
        torch.testing.assert_close(got, naive_knn(train_x, y.tolist(), query_x, min(k, 12), 0.1), rtol=1e-10, atol=1e-12)
    assert torch.allclose(knn_scores(train_x, classes, query_x, k=k).sum(1), torch.ones(4, dtype=torch.float64))


def test_the_monitor_reads_valid_tracks_and_leaves_every_mode_and_statistic(tmp_path):
    data = tutorial_layout(tmp_path / "labeled", 12, splits=("train", "valid", "test"))
    monitor = KNNMonitor(data, 8000, 2000, verbose=False)
    assert monitor.metric == "knn_pr_auc" and len(monitor.owner["valid"].unique()) == 12
    torch.manual_seed(0)
    encoder = SampleCNN(3, 0.125, "mean", conv="fast")
    encoder.train()
    encoder.net[1].eval()                                   # a mixed state must come back as it was
    modes = [m.training for m in encoder.modules()]
    state = {k: v.clone() for k, v in encoder.state_dict().items()}
    rng = torch.get_rng_state()
    value = monitor(encoder)["knn_pr_auc"]
    assert 0 <= value <= 1 and [m.training for m in encoder.modules()] == modes
    assert all(torch.equal(v, state[k]) for k, v in encoder.state_dict().items())   # BatchNorm statistics too
    assert torch.equal(torch.get_rng_state(), rng)
    assert monitor(encoder)["knn_pr_auc"] == value                                  # deterministic


def test_the_monitor_holds_a_bounded_spread_of_a_large_set(tmp_path):
    """Memory bounded whatever the set: at most max_tracks of each split, evenly spread, with their labels."""
    data = tutorial_layout(tmp_path / "labeled", 12, splits=("train", "valid", "test"))
    full = KNNMonitor(data, 8000, 2000, verbose=False)
    small = KNNMonitor(data, 8000, 2000, verbose=False, max_tracks=4)
    assert len(small.owner["train"].unique()) == len(small.owner["valid"].unique()) == 4
    kept = [0, 4, 7, 11]                                    # evenly spread over the 12 tracks
    assert (small.targets["valid"] == full.targets["valid"][kept]).all()
    first = full.owner["valid"] == kept[1]
    assert torch.equal(small.x["valid"][small.owner["valid"] == 1], full.x["valid"][first])


def rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_run_with_the_monitor_trains_exactly_as_one_without_and_resumes(audio_dir, tmp_path):
    data = tutorial_layout(tmp_path / "labeled", 12, splits=("train", "valid", "test"))
    common = [*TINY, "--precision", "fp32", "--ckpt_every", "100"]
    train.main(["--data", str(audio_dir), "--out", str(tmp_path / "plain"), *common, "--max_steps", "6"])
    monitored = ["--monitor", str(data), "--monitor_every", "2"]
    train.main(["--data", str(audio_dir), "--out", str(tmp_path / "mon"), *common, "--max_steps", "6", *monitored])
    plain, mon = rows(tmp_path / "plain"), rows(tmp_path / "mon")
    assert [r["loss"] for r in plain] == [r["loss"] for r in mon if "loss" in r]          # bit for bit
    readings = [(r["step"], r["knn_pr_auc"]) for r in mon if "knn_pr_auc" in r]
    assert [s for s, _ in readings] == [0, 2, 4, 6] and all(0 <= v <= 1 for _, v in readings)
    assert torch.load(tmp_path / "mon" / "checkpoint.pt", weights_only=True)["config"]["monitor_every"] == 2
    # stopped at step 3, resumed to 6: the same losses and the same readings
    train.main(["--data", str(audio_dir), "--out", str(tmp_path / "split"), *common, "--max_steps", "3", *monitored])
    train.main(["--data", str(audio_dir), "--out", str(tmp_path / "split"), "--resume", "--max_steps", "6"])
    split = rows(tmp_path / "split")
    assert [r["loss"] for r in split if "loss" in r] == [r["loss"] for r in mon if "loss" in r]
    assert [(r["step"], r["knn_pr_auc"]) for r in split if "knn_pr_auc" in r] == readings


def test_monitor_every_defaults_to_a_tenth_of_the_run_and_a_missing_folder_is_refused(audio_dir, tmp_path):
    from ssl_min.config import Config, resolve
    cfg = resolve(Config(data="x", max_steps=400, device="cpu", precision="fp32", conv="reference"))
    assert cfg.monitor_every == 40
    with pytest.raises(SystemExit, match="not a folder"):
        train.main(["--data", str(audio_dir), "--out", str(tmp_path / "r"), *TINY, "--max_steps", "1",
                    "--monitor", str(tmp_path / "nowhere")])

"""The probe's supervised row (ssl_min/evaluate/supervised.py): it learns an easy task, repeats from
its seed, keeps its best validation point, never reads the test split, and reports the headroom."""

import numpy as np
import torch

import probe
import train
from conftest import TINY
from ssl_min.data.labeled import load_labeled
from ssl_min.evaluate.supervised import train_supervised, valid_score
from ssl_min.models import build_encoder
from test_probe import tutorial_layout

CHUNK = 2000


def easy(tmp_path):
    """High against low tones, 16 tracks a split: a task the tiny encoder learns in a few steps."""
    return load_labeled(tutorial_layout(tmp_path / "labeled", 16, splits=("train", "valid", "test")), 8000)


def fresh(seed=0):
    torch.manual_seed(seed)
    return build_encoder(3, 0.125, "mean")


def test_it_learns_an_easy_task_keeps_its_best_point_and_repeats_from_its_seed(tmp_path):
    sets = easy(tmp_path)
    start = valid_score(fresh(), torch.nn.Linear(64, 3), sets["valid"], CHUNK, torch.device("cpu"), "multilabel")
    one, info = train_supervised(fresh(), sets["train"], sets["valid"], CHUNK, 24, 8, 3e-3, torch.device("cpu"),
                                 evaluations=6)
    two, _ = train_supervised(fresh(), sets["train"], sets["valid"], CHUNK, 24, 8, 3e-3, torch.device("cpu"),
                              evaluations=6)
    assert list(info["valid"]) == [4, 8, 12, 16, 20, 24]
    best = max(info["valid"].values())
    assert info["chosen_step"] == max(s for s, v in info["valid"].items() if v == best)
    assert best > 0.9 and best > start                       # high vs low: learnt
    assert not one.training
    assert all(torch.equal(a, b) for a, b in zip(one.state_dict().values(), two.state_dict().values()))


def test_the_probes_supervised_row_reports_the_headroom_is_cached_and_never_reads_test_labels(audio_dir, tmp_path,
                                                                                             capsys):
    run = tmp_path / "run"
    train.main(["--data", str(audio_dir), "--out", str(run), *TINY, "--max_steps", "2"])
    data = tutorial_layout(tmp_path / "labeled", 12, splits=("train", "valid", "test"))
    argv = ["--checkpoint", str(run / "checkpoint.pt"), "--data", str(data), "--num_workers", "0", "--conv",
            "reference", "--rows", "pretrained,random_init,supervised", "--supervised_steps", "6", "--features", "output"]
    report = probe.main(argv)
    out = capsys.readouterr().out
    assert set(report["results"]) == {"pretrained", "random_init", "supervised"}
    room = report["headroom"]
    gap = report["results"]["supervised"]["pr_auc"] - report["results"]["random_init"]["pr_auc"]
    assert abs(room["gap"] - gap) < 1e-12 and room["enough"] == (gap >= probe.HEADROOM)
    assert "headroom: supervised - random_init" in out and report["supervised"]["steps"] == 6
    # Test labels flipped: the supervised encoder is the one already trained (read back, same weights).
    csv = data / "test" / "annotations.csv"
    rows = [line.split(",") for line in csv.read_text().splitlines()]
    csv.write_text("\n".join([",".join(rows[0])] + [",".join([r[0], r[2], r[1], *r[3:]]) for r in rows[1:]]) + "\n")
    again = probe.main(argv + ["--out", str(tmp_path / "again.json")])
    assert "supervised: read back" in capsys.readouterr().out
    assert again["supervised"] == report["supervised"]
    assert np.isclose(again["results"]["supervised"]["head"]["valid_score"],
                      report["results"]["supervised"]["head"]["valid_score"])

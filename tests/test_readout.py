"""probe.py --features auto: the encoder's output is a slice of the block readout, and the choice
between the two reads the validation split only."""
import numpy as np
import pytest
import torch

import probe
from ssl_min.data.labeled import LabeledSet
from ssl_min.evaluate import BlockStats
from ssl_min.models import SampleCNN


@pytest.mark.parametrize("pool,chunk", [("mean", 2000), ("flatten", 81 * 3)])
@pytest.mark.parametrize("conv", ["reference", "fast"])
def test_the_output_columns_of_the_block_readout_are_the_encoders_output(pool, chunk, conv):
    encoder = SampleCNN(n_blocks=4, width=0.125, pool=pool, conv=conv).eval()
    x = torch.randn(5, 1, chunk)
    readout = BlockStats(encoder)
    with torch.no_grad():
        torch.testing.assert_close(readout(x)[:, readout.output_columns(chunk)], encoder(x), rtol=1e-5, atol=1e-5)


def planted(informative, n_tracks=90, seed=0):
    """Block features (2 chunks per track, 12 columns; the 'output' is columns 8..11) where the
    columns in `informative` carry the tag and the rest are noise. -> (features, sets)."""
    rng = np.random.default_rng(seed)
    feats, sets = {}, {}
    for split in ("train", "valid", "test"):
        y = rng.integers(0, 2, (n_tracks, 2))
        owner = torch.arange(2 * n_tracks) // 2
        x = rng.standard_normal((2 * n_tracks, 12))
        for c in informative:
            x[:, c] += 1.5 * y[owner.numpy(), c % 2]
        feats[split] = (torch.tensor(x, dtype=torch.float32), owner)
        sets[split] = LabeledSet([f"{split}{i}" for i in range(n_tracks)], y, ["a", "b"], "multilabel")
    return feats, sets


ARGS = probe.parser.parse_args(["--checkpoint", "x", "--data", "y"])


@pytest.mark.parametrize("informative,expected", [([0, 1, 2, 3], "blocks"), ([8, 9], "output")])
def test_auto_keeps_the_readout_that_scores_higher_on_validation(informative, expected):
    feats, sets = planted(informative)
    r = probe.choose_readout(feats, slice(8, 12), sets, ARGS)
    assert r["readout"]["chosen"] == expected
    assert r["readout"]["valid"][expected] == max(r["readout"]["valid"].values()) == r["head"]["valid_score"]


def test_permuting_the_test_labels_changes_nothing_but_the_test_scores():
    feats, sets = planted([0, 1, 2, 3, 9])
    a = probe.choose_readout(feats, slice(8, 12), sets, ARGS)
    perm = np.random.default_rng(1).permutation(len(sets["test"].targets))
    shuffled = {**sets, "test": LabeledSet(sets["test"].tracks, sets["test"].targets[perm], ["a", "b"], "multilabel")}
    b = probe.choose_readout(feats, slice(8, 12), shuffled, ARGS)
    assert a["readout"] == b["readout"] and a["head"] == b["head"]
    assert a["pr_auc"] != b["pr_auc"]                       # the test split was read, after the choice

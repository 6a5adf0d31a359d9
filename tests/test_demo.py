"""The built-in demo dataset: deterministic, in the tutorial's layout, labels consistent."""
import hashlib

import numpy as np

from ssl_min.data import demo
from ssl_min.data import scan_folder
from ssl_min.data.labeled import load_labeled

SIZES = {"unlabeled": 3, "train": 6, "valid": 3, "test": 4}


def digest(root):
    return hashlib.sha1(b"".join(p.read_bytes() for p in sorted(root.rglob("*.wav")))).hexdigest()


def test_demo_is_deterministic_and_loads_in_every_layout(tmp_path):
    a = demo.build(tmp_path / "a", seed=3, sizes=SIZES)
    b = demo.build(tmp_path / "b", seed=3, sizes=SIZES)
    assert digest(a) == digest(b)
    assert digest(demo.build(tmp_path / "c", seed=4, sizes=SIZES)) != digest(a)
    tracks, report = scan_folder(a / "unlabeled", demo.SR, verbose=False)
    assert len(tracks) == 3 and not report.skipped
    tags = load_labeled(a, demo.SR)
    assert set(tags) == {"train", "valid", "test"} and tags["train"].names == demo.TAGS
    y = tags["train"].targets
    names = demo.TAGS
    for x, z in (("fast", "slow"), ("major", "minor"), ("high", "low")):
        assert (y[:, names.index(x)] + y[:, names.index(z)] == 1).all()
    assert (y[:, :len(demo.INSTRUMENTS)].sum(1) >= 1).all()                # at least one instrument
    styles = load_labeled(a / "style", demo.SR)
    assert styles["test"].task == "multiclass" and styles["test"].names == sorted(demo.STYLES)
    assert [t.path.split("/")[-1] for t in styles["train"].tracks] == [t.path.split("/")[-1] for t in tags["train"].tracks]


def test_drum_tag_is_honest():
    """Tracks tagged 'drums' have more broadband transient energy (the hi-hat) than the rest."""
    rng = np.random.default_rng(0)
    hf = {0: [], 1: []}
    for _ in range(30):
        x, tags, _ = demo.make_track(rng)
        spectrum = np.abs(np.fft.rfft(x)) ** 2
        hf[tags["drums"]].append(spectrum[len(spectrum) * 3 // 4:].sum() / spectrum.sum())
    assert hf[0] and hf[1] and np.median(hf[1]) > 3 * np.median(hf[0])


def test_rebuild_is_a_no_op_when_complete(tmp_path):
    root = demo.build(tmp_path / "d", seed=0, sizes=SIZES)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*.wav")}
    demo.build(root, seed=0, sizes=SIZES)
    assert before == {p: p.stat().st_mtime_ns for p in root.rglob("*.wav")}

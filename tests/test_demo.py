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
    a = demo.build(tmp_path / "a", seed=3, sizes=SIZES, workers=2)
    b = demo.build(tmp_path / "b", seed=3, sizes=SIZES, workers=1)       # rendered here, in order
    assert digest(a) == digest(b) and (a / "train" / "annotations.csv").read_bytes() == \
        (b / "train" / "annotations.csv").read_bytes()
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


def test_a_production_draw_changes_the_audio_but_not_the_labels():
    from ssl_min.data.production import produce
    for seed in range(3):
        clean, tags, style = demo.make_track(np.random.default_rng(seed))
        a, tags_a, style_a = demo.make_track(np.random.default_rng(seed), np.random.default_rng((seed, 1)))
        b, tags_b, style_b = demo.make_track(np.random.default_rng(seed), np.random.default_rng((seed, 2)))
        assert tags == tags_a == tags_b and style == style_a == style_b
        assert len(clean) == len(a) == len(b) and np.isfinite(a).all()
        for x in (a, b):                                   # another recording of the same music
            assert abs(np.corrcoef(clean, x)[0, 1]) < 0.98
        assert 10 ** (-20 / 20) - 1e-4 <= np.abs(a).max() <= 10 ** (-1 / 20) + 1e-4    # peak in -20..-1 dBFS
    y1, s1 = produce(clean.astype(np.float64), demo.SR, np.random.default_rng(7))
    y2, s2 = produce(clean.astype(np.float64), demo.SR, np.random.default_rng(7))
    assert np.array_equal(y1, y2) and s1 == s2                      # a seeded draw is reproducible


def test_produced_and_clean_builds_share_every_label_and_no_audio(tmp_path):
    produced = demo.build(tmp_path / "p", seed=0, sizes=SIZES)
    clean = demo.build(tmp_path / "c", seed=0, sizes=SIZES, produced=False)
    for csv_path in produced.rglob("annotations.csv"):
        assert csv_path.read_text() == (clean / csv_path.relative_to(produced)).read_text()
    for wav in produced.rglob("*.wav"):
        assert wav.read_bytes() != (clean / wav.relative_to(produced)).read_bytes()
    assert digest(demo.build(tmp_path / "p2", seed=0, sizes=SIZES)) == digest(produced)   # same seed, same files

"""bench/real_music.py's folders: each recording once, so that no recording is in two splits; pool-only
packages never labeled."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("real_music", ROOT / "bench" / "real_music.py")
real_music = importlib.util.module_from_spec(spec)
spec.loader.exec_module(real_music)

RATE = 200    # a minute of audio in 12,000 samples


def write(path, seconds, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.random.default_rng(seed).uniform(-0.5, 0.5, int(seconds * RATE)), RATE)


def test_tracks_are_each_recording_once(tmp_path):
    write(tmp_path / "audio" / "track1.wav", 70, 0)
    for language in ("de", "en"):                     # byte-identical copies (drascula's languages)
        (tmp_path / language).mkdir()
        (tmp_path / language / "track1.wav").write_bytes((tmp_path / "audio" / "track1.wav").read_bytes())
    write(tmp_path / "songs" / "a" / "song.wav", 90, 1)      # Frets on Fire: a mix and its stem
    write(tmp_path / "songs" / "a" / "guitar.wav", 90, 2)
    write(tmp_path / "songs" / "b" / "song.wav", 80, 3)
    write(tmp_path / "solo" / "guitar.wav", 65, 4)           # a stem name with no song beside it
    write(tmp_path / "short.wav", 30, 5)                     # under a minute: not a track
    tracks = real_music.tracks_of(tmp_path)
    assert [name for _, _, name in tracks] == ["track1", "guitar", "a_song", "b_song"]  # shared stems: parent_stem
    assert [p.relative_to(tmp_path).as_posix() for p, _, _ in tracks] == [
        "audio/track1.wav", "solo/guitar.wav", "songs/a/song.wav", "songs/b/song.wav"]
    assert [round(s) for _, s, _ in tracks] == [70, 65, 90, 80]


def test_pool_packages_join_the_pool_only_and_leave_the_labeled_set_as_it_was(tmp_path, monkeypatch):
    def package(name, n):                              # n tracks of 70-100 s
        for i in range(n):
            write(tmp_path / "src" / name / f"{name}_{i}.wav", 70 + 3 * i, sum(map(ord, name)) * 10 + i)
    for name, n in [("a", 8), ("b", 9), ("small", 3), ("extra", 8), ("later", 2)]:
        package(name, n)
    monkeypatch.setattr(real_music, "fetch", lambda name, work: tmp_path / "src" / name)
    monkeypatch.setattr(real_music, "CLIP_RATE", 400)
    monkeypatch.setattr(real_music, "PACKAGES", ["a", "b", "small"])
    monkeypatch.setattr(real_music, "POOL_PACKAGES", ["extra"])
    work = tmp_path / "work"
    pool, labeled, summary = real_music.build(work)
    assert set(summary["classes"]) == {"a", "b"} and set(summary["pool_only"]) == {"small", "extra"}
    assert summary["pool_only"]["extra"]["pool"] == 8                       # all its tracks, none labeled
    assert {p.parent.name for p in labeled.rglob("*.wav")} == {"a", "b"}
    assert len(list((pool / "extra").iterdir())) == 8 and len(list((pool / "a").iterdir())) == 4
    for cls, n in [("a", 8), ("b", 9)]:                                     # by track, each in one split
        tracks = {s: {p.stem.rsplit("_", 1)[0] for p in (labeled / s / cls).glob("*.wav")}
                  for s in ("train", "valid", "test")}
        pooled = {p.stem for p in (pool / cls).iterdir()}
        assert sum(map(len, tracks.values())) + len(pooled) == n
        assert not (tracks["train"] & tracks["test"]) and not (pooled & tracks["test"])
    before = {p: p.stat().st_mtime_ns for p in labeled.rglob("*.wav")}
    # A pool package added later joins the pool; the labeled set is not rewritten.
    monkeypatch.setattr(real_music, "POOL_PACKAGES", ["extra", "later"])
    summary = real_music.build(work)[2]
    assert summary["pool_only"]["later"]["pool"] == 2 and len(list((pool / "later").iterdir())) == 2
    assert {p: p.stat().st_mtime_ns for p in labeled.rglob("*.wav")} == before
    monkeypatch.setattr(real_music, "PACKAGES", ["a", "b"])                 # other classes: a new build
    with pytest.raises(SystemExit, match="built from other packages"):
        real_music.build(work)

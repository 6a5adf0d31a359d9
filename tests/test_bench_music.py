"""bench/real_music.py's track list: each recording once, so that no recording is in two splits."""
import importlib.util
from pathlib import Path

import numpy as np
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

"""The incremental decode-once cache: only new files decoded, a kill keeps what was done, a file that
fails mid-decode is named and left out, blocks equal the whole track, earlier caches still read."""
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from ssl_min.data import cache as C
from ssl_min.data import decode as D
from ssl_min.data import open_tracks, scan_folder
from test_data import write

ROOT = Path(__file__).resolve().parents[1]
SR = 8000


def library(root, n, start=0):
    for i in range(start, start + n):
        write(root / f"{i:02d}.ogg", 2, 16000, channels=1 + i % 2, seed=i)
    return root


def spy(monkeypatch):
    """Count the files ensure_cache decodes (workers=1: in this process)."""
    seen = []
    real = D.decode_track

    def counted(job):
        seen.append(Path(job[0].path).name)
        return real(job)

    monkeypatch.setattr(D, "decode_track", counted)
    return seen


def test_a_start_after_adding_files_decodes_only_the_new_ones(tmp_path, monkeypatch, capsys):
    root = library(tmp_path / "lib", 4)
    cache = C.ensure_cache(scan_folder(root, SR, verbose=False)[0], root, SR, workers=1)
    library(root, 1, start=4)                                         # one file added
    seen = spy(monkeypatch)
    tracks = scan_folder(root, SR, verbose=False)[0]
    assert C.ensure_cache(tracks, root, SR, workers=1) == cache and seen == ["04.ogg"]
    assert "4 tracks reused, decoding 1 files once" in capsys.readouterr().out
    (root / "01.ogg").unlink()                                        # one removed: forgotten
    tracks = scan_folder(root, SR, verbose=False)[0]
    C.ensure_cache(tracks, root, SR, workers=1)
    assert seen == ["04.ogg"] and len(list((cache / "tracks").glob("*.npy"))) == 4
    cached = {t.path: t for t in open_tracks(cache, SR, verbose=False)[0]}
    assert sorted(cached) == sorted(t.path for t in tracks)
    for t in tracks:
        torch.testing.assert_close(cached[t.path].read_all(), t.read_all(), atol=1 / 32767, rtol=0)


KILL_AT_DECODE = """
import os, signal, sys
sys.path.insert(0, {root!r})
from ssl_min.data import cache as C
from ssl_min.data import decode as D
from ssl_min.data import scan_folder
real, calls = D.decode_track, {{"n": 0}}
def decode_track(job):
    calls["n"] += 1
    if calls["n"] == {at}:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(job)
D.decode_track = decode_track
C.ensure_cache(scan_folder({lib!r}, {sr}, verbose=False)[0], {lib!r}, {sr}, workers=1)
"""


def test_a_kill_halfway_keeps_the_finished_tracks(tmp_path, monkeypatch, capsys):
    root = library(tmp_path / "lib", 5)
    script = KILL_AT_DECODE.format(root=str(ROOT), at=3, lib=str(root), sr=SR)
    child = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    cache = C.default_cache_dir(root, SR)
    assert len(list((cache / "tracks").glob("*.npy"))) == 2 and not (cache / "index.json").exists()
    seen = spy(monkeypatch)
    tracks = scan_folder(root, SR, verbose=False)[0]
    C.ensure_cache(tracks, root, SR, workers=1)
    out = capsys.readouterr().out
    assert "2 tracks reused, decoding 3 files once" in out and seen == ["02.ogg", "03.ogg", "04.ogg"]
    assert len(open_tracks(cache, SR, verbose=False)[0]) == 5


def test_a_file_that_fails_mid_decode_is_named_and_the_rest_cached(tmp_path, monkeypatch, capsys):
    root = library(tmp_path / "lib", 3)
    monkeypatch.setattr(D, "BLOCK", 4096)                             # several blocks per track
    real = C.Track.read

    def read(self, start, n):
        if self.path.endswith("01.ogg") and start > 0:                 # the second block breaks
            raise RuntimeError("corrupt page")
        return real(self, start, n)

    monkeypatch.setattr(C.Track, "read", read)
    tracks = scan_folder(root, SR, verbose=False)[0]
    cache = C.ensure_cache(tracks, root, SR, workers=1)
    out = capsys.readouterr().out
    assert "skipped" in out and "01.ogg" in out and "corrupt page" in out and "1 could not be decoded" in out
    index = json.loads((cache / "index.json").read_text())
    assert list(index["failed"]) == [str(root / "01.ogg")] and len(index["tracks"]) == 2
    cached = {Path(t.path).name: t for t in open_tracks(cache, SR, verbose=False)[0]}
    assert sorted(cached) == ["00.ogg", "02.ogg"]
    for t in tracks:                                                   # blocks of 4096 equal the whole track
        if t.path in {c.path for c in cached.values()}:
            torch.testing.assert_close(cached[Path(t.path).name].read_all(), real(t, 0, t.length), atol=1 / 32767,
                                       rtol=0)
    seen = spy(monkeypatch)
    C.ensure_cache(tracks, root, SR, workers=1)                        # the same bad file is not retried
    assert seen == [] and "reusing" in capsys.readouterr().out


def test_a_cache_of_the_earlier_single_array_format_reads_and_is_converted(tmp_path, capsys):
    root = library(tmp_path / "lib", 2)
    tracks = scan_folder(root, SR, verbose=False)[0]
    old = tmp_path / "old"
    old.mkdir()
    samples = [np.round(np.clip(t.read_all().numpy(), -1, 1) * 32767).astype(np.int16) for t in tracks]
    np.save(old / "audio.npy", np.concatenate(samples))
    offsets = np.cumsum([0] + [len(s) for s in samples])
    (old / "index.json").write_text(json.dumps({"sample_rate": SR, "dtype": "int16", "tracks": [
        {"path": t.path, "offset": int(o), "length": t.length, "frames": t.frames, "file_rate": t.file_rate,
         "channels": t.channels} for t, o in zip(tracks, offsets)]}))
    read = {t.path: t.read_all() for t in open_tracks(old, SR, verbose=False)[0]}
    for t in tracks:
        torch.testing.assert_close(read[t.path], t.read_all(), atol=1 / 32767, rtol=0)
    C.ensure_cache(tracks, root, SR, cache_dir=old, workers=1)
    assert not (old / "audio.npy").exists() and len(list((old / "tracks").glob("*.npy"))) == 2

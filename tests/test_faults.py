"""Faults a real library meets, each reproduced on small data: a full disk, a checkpoint that would run
code, damaged files, a file replaced mid-build, a second job on the same cache, a killed decode worker,
SIGTERM mid-build, and `auto` choices that flip under load. Each gets one line or a named skip, and
nothing decoded, trained or cached is lost or mixed (bench/faults.py replays them and prints what held)."""
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import train
from conftest import TINY
from killer_track import KillerTrack
from ssl_min.data import cache as C
from ssl_min.data import locks as L
from ssl_min.data import open_tracks, scan_folder
from ssl_min.models.load import DamagedFile, UntrustedFile, load_encoder
from ssl_min.runtime import formulation, precision
from test_data import write

ROOT = Path(__file__).resolve().parents[1]
SR = 8000


def library(root, n, seconds=2, rate=16000):
    for i in range(n):
        write(root / f"{i:02d}.ogg", seconds, rate, channels=1 + i % 2, seed=i)
    return root


def python(code, **kw):
    """Run `code` in a fresh interpreter at the repository root -> CompletedProcess (output read)."""
    return subprocess.run([sys.executable, "-c", f"import sys; sys.path[:0] = [{str(ROOT)!r}]\n{code}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, **kw)


def one_line(child, *words):
    """The child failed with one line naming `words`, and no traceback."""
    err = child.stderr.strip()
    assert child.returncode != 0 and "Traceback" not in err, child.stdout + err
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    return err


BUILD = "from ssl_min.data import cache as C, scan_folder\nC.ensure_cache(scan_folder({lib!r}, 8000, verbose=False)[0], " \
        "{lib!r}, 8000, workers=1, verbose=False)"


# 1. A full disk (here: a file-size limit) is not bad audio.
def test_a_full_disk_stops_the_build_in_one_line_and_marks_no_track_bad(tmp_path):
    root = library(tmp_path / "lib", 4)
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # noqa: E731 (a track is 32 kB)
    child = python(BUILD.format(lib=str(root)), preexec_fn=limit)
    one_line(child, "File too large", "free some space", "none is marked bad")
    tracks = scan_folder(root, SR, verbose=False)[0]                  # the disk is fine again
    cache = C.ensure_cache(tracks, root, SR, workers=1, verbose=False)
    index = json.loads((cache / "index.json").read_text())
    assert index["failed"] == {} and len(index["tracks"]) == 4


# 2. A checkpoint is never unpickled beyond tensors.
class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def test_a_malicious_pickle_is_refused_without_running(tmp_path, monkeypatch):
    marker, evil = tmp_path / "ran", tmp_path / "evil.pt"
    torch.save({"model": {}, "config": {}, "x": Payload(str(marker))}, evil)
    with pytest.raises(UntrustedFile, match="refused"):
        load_encoder(evil)
    assert not marker.exists()
    child = python(f"from ssl_min.models.load import load_encoder\nload_encoder({str(evil)!r})")
    one_line(child, "evil.pt", "refused", "SSL_MIN_TRUST_PICKLE")
    assert not marker.exists()
    monkeypatch.setenv("SSL_MIN_TRUST_PICKLE", str(evil))             # the opt-in, for one named file
    with pytest.raises(Exception):
        load_encoder(evil)
    assert marker.exists()


def test_clmrs_lightning_hyper_parameters_load_without_pickle(tmp_path, monkeypatch):
    """CLMR's checkpoints keep their hyper-parameters in Lightning's AttributeDict / a Namespace: plain
    data, allowed by name (the module is faked here; nothing of Lightning is installed)."""
    import argparse
    import types
    module = types.ModuleType("pytorch_lightning.utilities.parsing")

    class AttributeDict(dict):
        pass

    AttributeDict.__module__, AttributeDict.__qualname__ = module.__name__, "AttributeDict"
    module.AttributeDict = AttributeDict
    for name in ("pytorch_lightning", "pytorch_lightning.utilities"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    from ssl_min.models.samplecnn import SampleCNN
    sd = {f"model.encoder.sequential.{k}": v for k, v in
          _clmr_keys(SampleCNN(9, 1.0, "flatten").state_dict()).items()}
    torch.save({"pytorch-lightning_version": "1.3.8", "state_dict": sd, "epoch": 3,
                "hyper_parameters": AttributeDict(batch_size=48, args=argparse.Namespace(lr=3e-4))}, tmp_path / "c.ckpt")
    encoder, info = load_encoder(tmp_path / "c.ckpt")
    assert info["source"].startswith("CLMR")


def _clmr_keys(state):
    """Our SampleCNN keys -> CLMR's `<i>.<j>.<tensor>` (the inverse of clmr_to_ssl_min, for 9 blocks)."""
    out = {}
    for key, v in state.items():
        _, k, t = key.split(".")
        k = int(k)
        i, j = (0, k) if k < 3 else ((k - 3) // 4 + 1, (k - 3) % 4) if k < 39 else (10, k - 39)
        out[f"{i}.{j}.{t}"] = v
    return out


# 3. A damaged checkpoint or metrics file: one line, and nothing else lost.
def test_a_damaged_checkpoint_is_named_in_one_line_everywhere_it_is_read(audio_dir, tmp_path):
    out = tmp_path / "run"
    train.main(["--data", str(audio_dir), "--out", str(out), *TINY, "--max_steps", "2"])
    good = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(good[:len(good) // 2])       # a full disk, a bad copy
    with pytest.raises(DamagedFile, match="checkpoint.pt.*damaged"):
        load_encoder(out / "checkpoint.pt")
    resume = python(f"import train\ntrain.main(['--data', {str(audio_dir)!r}, '--out', {str(out)!r}, '--resume'])")
    one_line(resume, "checkpoint.pt", "damaged", "best.pt")
    again = python(f"import train\ntrain.main(['--data', {str(audio_dir)!r}, '--out', {str(out)!r}])")
    one_line(again, "checkpoint.pt", "damaged")
    embed = subprocess.run([sys.executable, "-m", "ssl_min.embed", "--checkpoint", str(out / "checkpoint.pt"),
                            "--data", str(audio_dir), "--out", str(tmp_path / "emb")], cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
    one_line(embed, "checkpoint.pt", "damaged")
    assert (out / "config.json").exists() and (out / "metrics.jsonl").exists()   # nothing else touched


def test_a_half_written_metrics_row_does_not_block_resume(audio_dir, tmp_path, capsys):
    out = tmp_path / "run"
    train.main(["--data", str(audio_dir), "--out", str(out), *TINY, "--max_steps", "2"])
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "lo')                                    # a kill mid-write
    train.main(["--data", str(audio_dir), "--out", str(out), "--resume", "--max_steps", "3"])
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and "unreadable row" in capsys.readouterr().out


# 4. A file replaced between the scan and the build.
def test_a_file_replaced_after_the_scan_is_never_cached_under_its_old_description(tmp_path, capsys):
    root = library(tmp_path / "lib", 3, seconds=3, rate=16000)
    tracks = scan_folder(root, SR, verbose=False)[0]
    write(root / "01.ogg", 6, 44100, seed=9)                           # replaced: twice as long, another rate
    cache = C.ensure_cache(tracks, root, SR, workers=1)
    assert "changed or removed since the scan" in capsys.readouterr().out
    assert sorted(Path(t.path).name for t in open_tracks(cache, SR, verbose=False)[0]) == ["00.ogg", "02.ogg"]
    fresh = {Path(t.path).name: t for t in scan_folder(root, SR, verbose=False)[0]}   # the next start
    cached = {Path(t.path).name: t for t in open_tracks(root, SR, verbose=False)[0]}
    assert cached["01.ogg"].length == fresh["01.ogg"].length == 6 * SR
    torch.testing.assert_close(cached["01.ogg"].read_all(), fresh["01.ogg"].read_all(), atol=1 / 32767, rtol=0)


# 5. A second job on the same cache.
def test_a_rebuild_never_deletes_a_file_that_a_running_job_may_still_read(tmp_path):
    root = library(tmp_path / "lib", 3)
    reading = {Path(t.path).name: t for t in open_tracks(root, SR, verbose=False)[0]}   # lazily: nothing opened yet
    write(root / "01.ogg", 2, 16000, seed=7)                           # retagged / re-encoded meanwhile
    child = python(BUILD.format(lib=str(root)))                        # another job's start rebuilds the cache
    assert child.returncode == 0, child.stdout + child.stderr
    x = reading["01.ogg"].read_all()                                   # the running job still reads its samples
    assert x.shape == (2 * SR,) and x.abs().max() > 0
    L._reading.pop(str(C.default_cache_dir(root, SR).resolve())).close()   # that job ends
    child = python(BUILD.format(lib=str(root)))                        # a later build deletes the stale file
    assert child.returncode == 0 and not Path(reading["01.ogg"].file).exists()
    assert len(list((C.default_cache_dir(root, SR) / "tracks").glob("*.npy"))) == 3


def test_two_builders_of_one_cache_take_turns(tmp_path):
    root = library(tmp_path / "lib", 4)
    code = BUILD.format(lib=str(root)).replace("verbose=False)", "verbose=True)")
    first = subprocess.Popen([sys.executable, "-c", f"import sys; sys.path[:0] = [{str(ROOT)!r}]\n{code}"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = python(code)
    out = first.communicate(timeout=600)[0] + second.stdout
    assert first.returncode == 0 and second.returncode == 0, out
    assert out.count("4 decoded now") + out.count("decoding 4 files") <= 2   # one of them decoded, the other reused
    cached = {t.path: t for t in open_tracks(root, SR, verbose=False)[0]}
    for t in scan_folder(root, SR, verbose=False)[0]:
        torch.testing.assert_close(cached[t.path].read_all(), t.read_all(), atol=1 / 32767, rtol=0)


def test_one_cache_for_two_folders_is_refused_before_it_deletes_anything(tmp_path):
    a, b, shared = library(tmp_path / "a", 2), library(tmp_path / "b", 2), tmp_path / "shared"
    C.ensure_cache(scan_folder(a, SR, verbose=False)[0], a, SR, cache_dir=shared, workers=1, verbose=False)
    with pytest.raises(SystemExit, match="another folder"):
        C.ensure_cache(scan_folder(b, SR, verbose=False)[0], b, SR, cache_dir=shared, workers=1, verbose=False)
    assert len(open_tracks(shared, SR, verbose=False)[0]) == 2 and len(list((shared / "tracks").glob("*.npy"))) == 2


# 6. A decode worker killed (the OOM killer).
def test_a_killed_decode_worker_is_named_and_never_waited_on(tmp_path, capsys):
    root = library(tmp_path / "lib", 4)
    tracks = scan_folder(root, SR, verbose=False)[0]
    tracks[2] = KillerTrack(**{k: getattr(tracks[2], k) for k in
                               ("path", "frames", "file_rate", "channels", "sample_rate", "stamp")})
    cache = C.ensure_cache(tracks, root, SR, workers=2)
    out = capsys.readouterr().out
    assert "02.ogg" in out and "decoding process died" in out and "tried again at the next start" in out
    assert sorted(Path(t.path).name for t in open_tracks(cache, SR, verbose=False)[0]) == ["00.ogg", "01.ogg", "03.ogg"]
    assert json.loads((cache / "index.json").read_text())["failed"] == {}     # not marked bad for good


# 7. SIGTERM mid-build; a damaged index or cached file.
SIGTERM_AT_BLOCK = """
import os, signal
from ssl_min.data import cache as C, decode as D, scan_folder
D.BLOCK = 4096
real, calls = C.Track.read, {{"n": 0}}
def read(self, start, n):
    calls["n"] += 1
    if calls["n"] == 6:                                  # the second track, a block into it
        os.kill(os.getpid(), signal.SIGTERM)
    return real(self, start, n)
C.Track.read = read
C.ensure_cache(scan_folder({lib!r}, 8000, verbose=False)[0], {lib!r}, 8000, workers=1, verbose=False)
"""


def test_sigterm_mid_build_leaves_no_temporary_file_and_the_next_start_finishes(tmp_path):
    root = library(tmp_path / "lib", 3)
    child = python(SIGTERM_AT_BLOCK.format(lib=str(root)))
    assert child.returncode == 128 + signal.SIGTERM and "Traceback" not in child.stderr, child.stderr
    tracks_dir = C.default_cache_dir(root, SR) / "tracks"
    assert list(tracks_dir.glob("*.tmp*")) == [] and len(list(tracks_dir.glob("*.npy"))) == 1
    (tracks_dir / "x.npy.tmp99999").write_bytes(b"half")               # what a SIGKILLed worker would leave
    assert len(open_tracks(root, SR, verbose=False)[0]) == 3
    assert list(tracks_dir.glob("*.tmp*")) == []


def test_a_damaged_index_is_rebuilt_and_a_cut_short_track_decoded_again(tmp_path, capsys):
    root = library(tmp_path / "lib", 3)
    cache = C.ensure_cache(scan_folder(root, SR, verbose=False)[0], root, SR, workers=1, verbose=False)
    good = (cache / "index.json").read_text()
    (cache / "index.json").write_text(good[:len(good) // 2])          # a kill or a full disk mid-write
    child = python(f"from ssl_min.data import open_tracks\nopen_tracks({str(cache)!r}, 8000)")
    one_line(child, "index.json", "damaged")                          # read directly: one line
    files = sorted((cache / "tracks").glob("*.npy"))
    with open(files[1], "r+b") as f:                                  # a track's file cut short
        f.truncate(files[1].stat().st_size // 2)
    cached = {t.path: t for t in open_tracks(root, SR, verbose=False)[0]}   # from the folder: repaired
    out = capsys.readouterr().out
    assert "index.json is damaged" in out and "1 cached track(s) cut short" in out
    for t in scan_folder(root, SR, verbose=False)[0]:
        torch.testing.assert_close(cached[t.path].read_all(), t.read_all(), atol=1 / 32767, rtol=0)
    with open(files[0], "r+b") as f:
        f.truncate(100)
    child = python(f"from ssl_min.data import open_tracks\nopen_tracks({str(cache)!r}, 8000)")
    one_line(child, files[0].name, "damaged")


# 8. `auto` decides once per machine: the same command, the same numbers.
def test_auto_choices_are_remembered_so_a_timing_that_flips_under_load_changes_nothing(monkeypatch):
    timings = iter([0.030, 0.080, 0.040, 0.020])                       # reference, fast; then the other way round
    monkeypatch.setattr(formulation, "encoder_seconds", lambda *a, **k: next(timings))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    first = formulation.resolve_conv("auto", "cpu", (3, 0.125, "mean"), 2000, train=True)
    second = formulation.resolve_conv("auto", "cpu", (3, 0.125, "mean"), 2000, train=True)
    assert first[0] == second[0] == "reference" and "remembered" in second[1]
    assert next(timings) == 0.040                                      # the second start measured nothing
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    steps = iter([0.010, 0.005, 0.010, 0.020])                         # fp32, bf16; then the other way round
    monkeypatch.setattr(precision, "conv_step_seconds", lambda bf16: next(steps))
    assert precision.auto_precision("cpu")[0] == precision.auto_precision("cpu")[0] == "bf16"


def test_one_command_twice_with_the_cpu_loaded_the_second_time_ends_on_the_same_loss(audio_dir, tmp_path):
    """The whole claim, with `auto` everywhere: the second run shares the CPU with a busy process."""
    args = [a for a in TINY if a not in ("--conv", "fast")] + ["--conv", "auto", "--precision", "auto",
                                                               "--max_steps", "3", "--objective", "cpc"]
    train.main(["--data", str(audio_dir), "--out", str(tmp_path / "a"), *args])
    burn = subprocess.Popen([sys.executable, "-c", "while True: sum(i * i for i in range(10**6))"])
    try:
        train.main(["--data", str(audio_dir), "--out", str(tmp_path / "b"), *args])
    finally:
        burn.kill()
        burn.wait()
    loss = lambda d: [json.loads(r)["loss"] for r in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]  # noqa
    assert loss("a") == loss("b")
    assert np.isfinite(loss("a")).all()

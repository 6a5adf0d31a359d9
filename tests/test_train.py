"""train.py end to end on generated audio: steps, checkpoints, exact resume, kills, NaN stop, torchrun."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import train
from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def run(audio_dir, out, *extra):
    train.main(["--data", str(audio_dir), "--out", str(out), *TINY, *extra])


def losses(out):
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_two_steps_write_config_metrics_and_loadable_checkpoints(audio_dir, tmp_path):
    out = tmp_path / "run"
    run(audio_dir, out, "--max_steps", "2")                     # precision auto: bf16 on this CPU
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 2 and set(ckpt) >= {"model", "optimizer", "scaler", "step", "epoch", "config", "rng"}
    assert json.loads((out / "config.json").read_text()) == ckpt["config"]
    assert ckpt["config"]["precision"] in ("bf16", "fp32") and ckpt["config"]["max_steps"] == 2
    assert (out / "best.pt").exists()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert set(rows[0]) == {"step", "epoch", "loss", "lr", "clips_per_s", "data_wait"}
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)


def test_resume_gives_the_same_loss_curve(audio_dir, tmp_path):
    # 10 tracks, batch 4: 3 steps per epoch, so stopping at 4 stops mid-epoch.
    common = ["--precision", "fp32", "--max_steps", "8", "--ckpt_every", "100"]
    run(audio_dir, tmp_path / "straight", *common)
    run(audio_dir, tmp_path / "split", *common[:-4], "--max_steps", "4", "--ckpt_every", "100")
    run(audio_dir, tmp_path / "split", "--resume", "--max_steps", "8")
    a, b = losses(tmp_path / "straight"), losses(tmp_path / "split")
    assert len(a) == len(b) == 8
    assert a == pytest.approx(b, rel=1e-6, abs=1e-7)


def test_resume_refuses_to_change_the_run(audio_dir, tmp_path):
    run(audio_dir, tmp_path / "r", "--max_steps", "1")
    with pytest.raises(SystemExit, match="lr"):
        run(audio_dir, tmp_path / "r", "--resume", "--lr", "0.5")


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(audio_dir, tmp_path, monkeypatch):
    out = tmp_path / "nan"
    calls = {"n": 0}
    real = train.NTXent.forward

    def poisoned(self, z1, z2):
        calls["n"] += 1
        return real(self, z1, z2) * (float("nan") if calls["n"] == 3 else 1.0)

    monkeypatch.setattr(train.NTXent, "forward", poisoned)
    with pytest.raises(SystemExit) as exit_info:
        run(audio_dir, out, "--max_steps", "10", "--ckpt_every", "2")
    assert exit_info.value.code == 2
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def start(audio_dir, out, *extra):
    cmd = [sys.executable, str(ROOT / "train.py"), "--data", str(audio_dir), "--out", str(out), *TINY,
           "--max_steps", "100000", "--ckpt_every", "1", "--chunk_samples", "6000", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for_steps(out, n, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if (out / "metrics.jsonl").exists() and len((out / "metrics.jsonl").read_text().splitlines()) >= n:
            return
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.2)
    raise TimeoutError


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_a_kill_in_the_middle_leaves_a_loadable_checkpoint(audio_dir, tmp_path, sig):
    out = tmp_path / "killed"
    proc = start(audio_dir, out)
    wait_for_steps(out, 5, proc)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)   # never a half-written file
    assert ckpt["step"] >= 4
    if sig == signal.SIGINT:                                       # Ctrl-C saves the current step
        assert proc.returncode == 130
        logged = len((out / "metrics.jsonl").read_text().splitlines())
        # The signal may land between a step's end and its log line, never further away.
        assert logged <= ckpt["step"] <= logged + 1


def test_two_processes_under_torchrun(audio_dir, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", "29533",
           str(ROOT / "train.py"), "--data", str(audio_dir), "--out", str(out), *TINY, "--max_steps", "3",
           "--precision", "fp32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 3 and len(ckpt["rng"]["augment"]) == 2
    assert "2 process(es)" in proc.stdout
    assert len(losses(out)) == 3                                   # only rank 0 writes

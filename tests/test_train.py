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
from conftest import TINY, write_tracks

ROOT = Path(__file__).resolve().parents[1]


def run(audio_dir, out, *extra):
    train.main(["--data", str(audio_dir), "--out", str(out), *TINY, *extra])


def losses(out):
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_two_steps_write_config_metrics_and_loadable_checkpoints(audio_dir, tmp_path):
    out = tmp_path / "run"
    run(audio_dir, out, "--max_steps", "2")                     # precision auto: bf16 or fp32, by CPU
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 2 and set(ckpt) >= {"model", "optimizer", "scaler", "step", "epoch", "config", "rng"}
    assert json.loads((out / "config.json").read_text()) == ckpt["config"]
    assert ckpt["config"]["precision"] in ("bf16", "fp32") and ckpt["config"]["max_steps"] == 2
    assert not (out / "best.pt").exists()                       # 2 steps < one epoch (10 steps): no best
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert set(rows[0]) == {"step", "epoch", "loss", "lr", "clips_per_s", "data_wait"}
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)


def test_the_log_says_which_formulation_ran_and_why(audio_dir, tmp_path, capsys):
    run(audio_dir, tmp_path / "auto", "--max_steps", "1", "--conv", "auto")        # the last --conv wins
    out = capsys.readouterr().out
    chosen = json.loads((tmp_path / "auto" / "config.json").read_text())["conv"]
    assert chosen in ("reference", "fast")
    assert f"conv auto -> {chosen}: " in out and "forward + backward: reference" in out and f"conv {chosen}\n" in out
    run(audio_dir, tmp_path / "ref", "--max_steps", "1", "--conv", "reference")
    out = capsys.readouterr().out
    assert "conv reference: as set (--conv, or the config of the run resumed), not measured" in out and "conv reference\n" in out
    assert torch.load(tmp_path / "ref" / "checkpoint.pt", weights_only=True)["config"]["conv"] == "reference"


def test_resume_gives_the_same_loss_curve(audio_dir, tmp_path):
    # 10 tracks, batch 4: 3 steps per epoch, so stopping at 4 stops mid-epoch.
    common = ["--precision", "fp32", "--max_steps", "8", "--ckpt_every", "100"]
    run(audio_dir, tmp_path / "straight", *common)
    run(audio_dir, tmp_path / "split", *common[:-4], "--max_steps", "4", "--ckpt_every", "100")
    run(audio_dir, tmp_path / "split", "--resume", "--max_steps", "8")
    a, b = losses(tmp_path / "straight"), losses(tmp_path / "split")
    assert len(a) == len(b) == 8
    assert a == pytest.approx(b, rel=1e-6, abs=1e-7)


def test_best_pt_compares_whole_epochs_and_batches_never_shrink(audio_dir, tmp_path):
    # 10 tracks, 40 chunks, batch 4: an epoch is 10 steps. 25 steps: two whole epochs, half a third.
    out = tmp_path / "epochs"
    run(audio_dir, out, "--max_steps", "25", "--precision", "fp32")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    means = [sum(r["loss"] for r in rows if r["epoch"] == e) / 10 for e in (0, 1)]
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["best_loss"] == pytest.approx(min(means)) and best["step"] == 10 * (1 + means.index(min(means)))
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 25


def test_fewer_tracks_than_the_batch_trains_says_so_and_masks_own_track_negatives(tmp_path, monkeypatch, capsys):
    write_tracks(tmp_path / "three", 3)
    from ssl_min.objectives import NTXent
    seen = []
    real = NTXent.forward

    def spy(self, z1, z2, ids=None):
        seen.append(ids.clone())
        return real(self, z1, z2, ids=ids)

    monkeypatch.setattr(NTXent, "forward", spy)
    run(tmp_path / "three", tmp_path / "run", "--batch_size", "8", "--max_steps", "3")
    assert "3 tracks < batch 8" in capsys.readouterr().out
    assert [len(ids) for ids in seen] == [8, 8, 8]                 # the batch never shrinks
    assert all(set(ids.tolist()) <= {0, 1, 2} and len(set(ids.tolist())) < 8 for ids in seen)


def test_a_folder_with_one_track_is_refused(tmp_path):
    write_tracks(tmp_path / "one", 1)
    with pytest.raises(SystemExit, match="at least 2"):
        run(tmp_path / "one", tmp_path / "run", "--max_steps", "1")


def test_an_existing_run_is_never_overwritten_and_resume_needs_a_checkpoint(audio_dir, tmp_path):
    run(audio_dir, tmp_path / "r", "--max_steps", "1")
    before = (tmp_path / "r" / "checkpoint.pt").read_bytes()
    with pytest.raises(SystemExit, match="already holds a run .*step 1.*--resume"):
        run(audio_dir, tmp_path / "r", "--max_steps", "1")
    assert (tmp_path / "r" / "checkpoint.pt").read_bytes() == before
    with pytest.raises(SystemExit, match="no checkpoint at"):
        train.main(["--out", str(tmp_path / "nothing"), "--resume"])


def test_flags_that_would_lie_are_refused(audio_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):                                # a typo is not False
        run(audio_dir, tmp_path / "a", "--compile", "ture")
    assert "expected true or false" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="lowpass_max = 4000 Hz must lie in .0, 4000. Hz"):
        run(audio_dir, tmp_path / "b", "--lowpass_max", "4000")   # at the Nyquist frequency of 8 kHz
    with pytest.raises(SystemExit, match="--data is required"):
        train.main(["--preset", "clmr", "--out", str(tmp_path / "c")])


@pytest.mark.parametrize("avx512_bf16, amx, ms_fp32, ms_bf16, expected", [
    (False, False, 10.0, 1.0, "fp32"),                # emulated bf16 (AVX2 only, ~100x slower): never timed
    (True, False, 10.0, 4.0, "bf16"),                 # native and measured faster
    (False, True, 10.0, 4.0, "bf16"),
    (True, False, 10.0, 9.0, "fp32"),                 # a near tie keeps fp32
    (True, False, 10.0, 12.0, "fp32")])               # native but slower (one AVX512-BF16 machine was)
def test_auto_precision_on_cpu_takes_bf16_where_native_and_measured_faster(monkeypatch, avx512_bf16, amx,
                                                                           ms_fp32, ms_bf16, expected):
    from ssl_min.runtime import precision
    from ssl_min.config import Config, resolve
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    timed = []
    monkeypatch.setattr(precision, "conv_step_seconds", lambda bf16: timed.append(bf16) or (ms_bf16 if bf16 else ms_fp32))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    notes = []
    cfg = resolve(Config(data="x", device="cpu", precision="auto", conv="reference"), notes)
    assert cfg.precision == expected and notes[0].startswith(f"precision auto -> {expected}: ")
    assert sorted(timed) == ([False, True] if avx512_bf16 or amx else [])
    monkeypatch.setenv("WORLD_SIZE", "2")             # under torchrun: unmeasured, so every rank agrees
    if avx512_bf16 or amx:
        assert resolve(Config(data="x", device="cpu", precision="auto", conv="reference")).precision == "bf16"


def test_the_precision_measurement_times_a_real_convolution_step():
    from ssl_min.runtime.precision import conv_step_seconds
    t = conv_step_seconds(False, batch=2, channels=8, frames=81, trials=1)
    assert 0 < t < float("inf")


@pytest.mark.parametrize("bf16, expected", [(True, "bf16"), (False, "fp16")])
def test_auto_precision_on_cuda_picks_bf16_else_fp16(monkeypatch, bf16, expected):
    from ssl_min.config import Config, resolve
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
    assert resolve(Config(data="x", device="cuda", precision="auto")).precision == expected


def test_the_default_run_folder_is_named_after_the_preset(audio_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train.main(["--data", str(audio_dir), *TINY, "--preset", "cpu", "--max_steps", "1", "--warmup_steps", "0",
                "--sample_rate", "22050", "--chunk_samples", "2000"])
    assert (tmp_path / "runs" / "cpu" / "checkpoint.pt").exists()


def test_resume_refuses_to_change_the_run(audio_dir, tmp_path):
    run(audio_dir, tmp_path / "r", "--max_steps", "1")
    with pytest.raises(SystemExit, match="lr"):
        run(audio_dir, tmp_path / "r", "--resume", "--lr", "0.5")


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(audio_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "nan"
    calls = {"n": 0}
    from ssl_min.objectives import NTXent
    real = NTXent.forward

    def poisoned(self, z1, z2, ids=None):
        calls["n"] += 1
        return real(self, z1, z2, ids) * (float("nan") if calls["n"] == 3 else 1.0)

    monkeypatch.setattr(NTXent, "forward", poisoned)
    with pytest.raises(SystemExit) as exit_info:
        run(audio_dir, out, "--max_steps", "10", "--ckpt_every", "2")
    assert exit_info.value.code == 2
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert f"{out / 'checkpoint.pt'} (step 2) is untouched" in capsys.readouterr().out     # says only what is true
    calls["n"] = 0                                     # the third loss again, now before any checkpoint
    with pytest.raises(SystemExit):
        run(audio_dir, tmp_path / "nan_early", "--max_steps", "10", "--ckpt_every", "5")
    assert "no checkpoint had been written yet" in capsys.readouterr().out
    assert not (tmp_path / "nan_early" / "checkpoint.pt").exists()


def start(audio_dir, out, log, *extra, ignore_sigint=False):
    """train.py in a child process; its output goes to a file (a pipe nobody reads can fill and
    stall the child). ignore_sigint: start it the way `cmd &` in a script does, SIGINT ignored."""
    cmd = [sys.executable, str(ROOT / "train.py"), "--data", str(audio_dir), "--out", str(out), *TINY,
           "--max_steps", "100000", "--ckpt_every", "1", "--chunk_samples", "6000", *extra]
    pre = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=pre)


def wait_for_steps(out, n, proc, log_path, guard=300):
    """Wait on an event: n rows in metrics.jsonl. The guard only turns a hang into a report."""
    deadline = time.monotonic() + guard
    while time.monotonic() < deadline:
        if (out / "metrics.jsonl").exists() and len((out / "metrics.jsonl").read_text().splitlines()) >= n:
            return
        assert proc.poll() is None, f"child exited early:\n{log_path.read_text()[-3000:]}"
        time.sleep(0.05)
    raise AssertionError(f"no {n} steps within {guard} s:\n{log_path.read_text()[-3000:]}")


@pytest.mark.parametrize("ignore_sigint", [False, True], ids=["sigint", "sigint-inherited-ignored"])
def test_ctrl_c_saves_the_current_step_and_exits_130(audio_dir, tmp_path, ignore_sigint):
    # The second case is how this test used to hang: a parent that ignores SIGINT (a CI script run
    # with `&`, nohup) hands "ignored" to the child and Python installs no KeyboardInterrupt.
    out, log_path = tmp_path / "killed", tmp_path / "child.log"
    with open(log_path, "w") as log:
        proc = start(audio_dir, out, log, ignore_sigint=ignore_sigint)
        try:
            wait_for_steps(out, 5, proc, log_path)
            proc.send_signal(signal.SIGINT)
            rc = proc.wait(timeout=300)
        finally:
            proc.kill()
    assert rc == 130, log_path.read_text()[-3000:]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    logged = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    # Saved at a step boundary: the checkpoint's step is the last step logged, exactly.
    assert ckpt["step"] >= 5 and logged == list(range(1, ckpt["step"] + 1))
    assert "interrupted: saved" in log_path.read_text()


def test_sigterm_to_the_whole_process_group_saves_the_step_and_exits_130(audio_dir, tmp_path):
    """`kill -TERM -PGID`, a scheduler's or `docker stop`'s way: the DataLoader worker gets the signal
    too. It must not die of it (the main process would fail on a killed worker before saving);
    the main process stops at a step boundary, saves, and takes its worker down itself."""
    out, log_path = tmp_path / "killed", tmp_path / "child.log"
    cmd = [sys.executable, str(ROOT / "train.py"), "--data", str(audio_dir), "--out", str(out), *TINY,
           "--max_steps", "100000", "--ckpt_every", "1000", "--chunk_samples", "6000", "--num_workers", "1"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_steps(out, 5, proc, log_path)
            os.killpg(proc.pid, signal.SIGTERM)
            rc = proc.wait(timeout=300)
        finally:
            proc.kill()
    assert rc == 130, log_path.read_text()[-3000:]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    logged = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert ckpt["step"] >= 5 and logged == list(range(1, ckpt["step"] + 1))


def test_sigkill_leaves_a_loadable_checkpoint(audio_dir, tmp_path):
    out, log_path = tmp_path / "killed", tmp_path / "child.log"
    with open(log_path, "w") as log:
        proc = start(audio_dir, out, log)
        try:
            wait_for_steps(out, 5, proc, log_path)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=300)
        finally:
            proc.kill()
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)   # never a half-written file
    assert ckpt["step"] >= 4


# A kill at an exact step, from inside the run: the signal is real (os.kill on this process, or a
# child that SIGKILLs itself), but *when* it lands is fixed, so the comparison is exact.
KILL_AT_STEP = """
import os, signal, sys
sys.path.insert(0, {root!r})
import train
calls = {{"n": 0}}
real = train.train_step
def train_step(*args):
    calls["n"] += 1
    if calls["n"] == {at}:
        os.kill(os.getpid(), {sig})
    return real(*args)
train.train_step = train_step
train.main({argv!r})
"""


@pytest.mark.parametrize("sig,workers,objective", [
    (signal.SIGINT, 0, "simclr"), (signal.SIGINT, 1, "simclr"), (signal.SIGKILL, 0, "simclr"),
    (signal.SIGKILL, 1, "simclr"), (signal.SIGKILL, 0, "moco"), (signal.SIGKILL, 0, "vicreg"),
    (signal.SIGKILL, 0, "byol"), (signal.SIGINT, 0, "byol"), (signal.SIGKILL, 0, "cpc"), (signal.SIGKILL, 1, "cpc"),
    (signal.SIGKILL, 0, "masked"), (signal.SIGKILL, 1, "masked")])
def test_resume_after_a_kill_ends_where_an_uninterrupted_run_ends(audio_dir, tmp_path, sig, workers, objective):
    # 10 tracks, batch 4: 3 steps per epoch. Checkpoints every 3 steps; the kill lands during step 6
    # (SIGINT: step 6 finishes and is saved; SIGKILL: steps 4-5 are lost and done again). MoCo's
    # queue, and MoCo's and BYOL's momentum networks, BYOL's predictor, CPC's GRU and predictors, and
    # the masked objective's codebook, heads and spans (with its mixture on) must come back exactly.
    masked = ["--mask_tokens", "8", "--codebook_chunks", "32", "--mask_mix", "0.5"] if objective == "masked" else []
    common = [*TINY, "--data", str(audio_dir), "--precision", "fp32", "--num_workers", str(workers),
              "--ckpt_every", "3", "--objective", objective, "--queue_size", "12", *masked]
    straight, split = tmp_path / "straight", tmp_path / "split"
    train.main([*common, "--out", str(straight), "--max_steps", "10"])
    script = KILL_AT_STEP.format(root=str(ROOT), at=6, sig=int(sig),
                                 argv=[*common, "--out", str(split), "--max_steps", "10"])
    child = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert child.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), child.stdout + child.stderr
    saved = torch.load(split / "checkpoint.pt", weights_only=True)["step"]
    assert saved == (6 if sig == signal.SIGINT else 3)
    train.main(["--out", str(split), "--resume"])
    a, b = losses(straight), losses(split)
    steps = [json.loads(line)["step"] for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 11))                             # rows past the checkpoint trimmed
    assert a == b                                                  # the same numbers, bit for bit
    assert torch.load(split / "checkpoint.pt", weights_only=True)["step"] == 10
    ends = [torch.load(run / "checkpoint.pt", weights_only=True) for run in (straight, split)]
    for part in ("model", "objective"):                            # CPC's GRU and predictors included
        assert ends[0][part].keys() == ends[1][part].keys()
        assert all(torch.equal(ends[0][part][k], ends[1][part][k]) for k in ends[0][part])


def test_a_new_run_into_a_folder_killed_before_its_first_checkpoint_starts_clean(audio_dir, tmp_path):
    # An epoch is 10 steps (10 tracks, batch 4), checkpoints every 100: the kill during step 6 leaves
    # metrics.jsonl with steps 1-5 and config.json, but no checkpoint.pt.
    out = tmp_path / "killed"
    argv = [*TINY, "--data", str(audio_dir), "--out", str(out), "--max_steps", "100", "--ckpt_every", "100"]
    child = subprocess.run([sys.executable, "-c", KILL_AT_STEP.format(root=str(ROOT), at=6, sig=int(signal.SIGKILL),
                                                                       argv=argv)],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert child.returncode == -signal.SIGKILL and not (out / "checkpoint.pt").exists()
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5]
    log = tmp_path / "again.log"
    with open(log, "w") as f:
        code = subprocess.call([sys.executable, str(ROOT / "train.py"), *argv[:-4], "--max_steps", "3"], cwd=ROOT,
                               stdout=f, stderr=subprocess.STDOUT)
    assert code == 0 and "stopped before its first checkpoint" in log.read_text()
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert json.loads((out / "config.json").read_text())["max_steps"] == 3


@pytest.mark.parametrize("objective", ["simclr", "masked"])
def test_two_processes_under_torchrun(audio_dir, tmp_path, objective):
    # masked: rank 0 fits the codebook while rank 1 waits, both install RUN/codebook.pt; with the
    # token head off (w_tokens 0) DDP must find no parameter without a gradient.
    out = tmp_path / "ddp"
    extra = ["--mask_tokens", "8", "--codebook_chunks", "32", "--w_tokens", "0"] if objective == "masked" else []
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",  # a free port
           str(ROOT / "train.py"), "--data", str(audio_dir), "--out", str(out), *TINY, "--max_steps", "3",
           "--precision", "fp32", "--objective", objective, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 3 and len(ckpt["rng"]["augment"]) == 2
    assert "2 process(es)" in proc.stdout
    assert len(losses(out)) == 3                                   # only rank 0 writes
    if objective == "masked":
        book = torch.load(out / "codebook.pt", weights_only=True)
        assert torch.equal(ckpt["objective"]["teachers.centroids"], book["centroids"])
        assert not any(k.startswith("heads.tokens") for k in ckpt["objective"])


SLOW_BUILD = """
import os, sys, time
sys.path.insert(0, {root!r})
import train
real = train.open_tracks
def open_tracks(*args, **kw):
    if os.environ["RANK"] == "0" and kw.get("build", True):   # rank 0's data build outlasts the timeout
        t = time.monotonic()
        while time.monotonic() - t < {seconds}:
            pass
    return real(*args, **kw)
train.open_tracks = open_tracks
from ssl_min.runtime.distributed import run_script
run_script(lambda: train.main(sys.argv[1:]))
"""


def test_two_processes_start_even_when_the_data_build_outlasts_the_collective_timeout(audio_dir, tmp_path):
    """Rank 0 builds the data for 3x the group's timeout; rank 1 waits in no collective that times out."""
    out, script = tmp_path / "ddp", tmp_path / "slow.py"
    script.write_text(SLOW_BUILD.format(root=str(ROOT), seconds=9))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           "--data", str(audio_dir), "--out", str(out), *TINY, "--max_steps", "3", "--precision", "fp32",
           "--dist_timeout", "3"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 3


@pytest.mark.parametrize("body, code, stdout, stderr", [
    ("print('saved', end='')", 0, "saved", ""),                 # unflushed output still arrives
    ("print('x'); sys.exit(130)", 130, "x\n", ""),
    ("sys.exit('bad data: 1 track')", 1, "", "bad data: 1 track\n"),
])
def test_a_torchrun_process_leaves_by_os_exit_with_mains_status(tmp_path, body, code, stdout, stderr):
    """distributed.run_script: under torchrun (WORLD_SIZE > 1) the process skips the interpreter's
    finalization (where gloo's worker threads can abort it); the atexit hook proves it was skipped."""
    script = tmp_path / "main.py"
    script.write_text("import atexit, sys\nfrom ssl_min.runtime.distributed import run_script\n"
                      "atexit.register(lambda: print('finalized', file=sys.stderr))\n"
                      f"def main():\n    {body}\nrun_script(main)\n")
    env = {**os.environ, "WORLD_SIZE": "2", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (code, stdout, stderr)
    alone = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                           env={**env, "WORLD_SIZE": "1"})
    assert alone.returncode == code and alone.stderr.endswith("finalized\n")   # one process: a normal exit


def test_torchrun_sigint_to_one_rank_stops_every_rank_at_one_step(audio_dir, tmp_path):
    """Ctrl-C reaching one rank only: the ranks agree through the loss's all-reduce, stop at the
    same step boundary, and leave one checkpoint at exactly the last logged step."""
    out, log_path = tmp_path / "ddp", tmp_path / "torchrun.log"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "train.py"), "--data", str(audio_dir), "--out", str(out), *TINY, "--max_steps", "100000",
           "--ckpt_every", "1000", "--precision", "fp32"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            wait_for_steps(out, 5, proc, log_path)
            workers = subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True,
                                     text=True).stdout.split()
            rank1 = [int(w) for w in workers if b"RANK=1" in Path(f"/proc/{w}/environ").read_bytes().split(b"\0")]
            assert len(rank1) == 1, workers
            os.kill(rank1[0], signal.SIGINT)
            proc.wait(timeout=300)
        finally:
            proc.kill()
    text = log_path.read_text()
    assert "interrupted: saved" in text, text[-3000:]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    logged = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert ckpt["step"] >= 5 and logged == list(range(1, ckpt["step"] + 1)) and len(ckpt["rng"]["augment"]) == 2


def test_resume_notices_changed_data(audio_dir, tmp_path):
    run(audio_dir, tmp_path / "r", "--max_steps", "2")
    write_tracks(audio_dir / "more", 2, seed=9)                   # two tracks added to the folder
    with pytest.raises(SystemExit, match="changed since the checkpoint"):
        train.main(["--out", str(tmp_path / "r"), "--resume", "--max_steps", "4"])


def test_separate_views_run_the_encoder_per_view():
    from ssl_min.models import build_model
    model = build_model(3, 0.125, "mean").train()
    x = torch.randn(8, 1, 2000)
    z_sep, z_joint = model(x, groups=2), model(x)
    z_parts = torch.cat([model(x[:4]), model(x[4:])])             # BatchNorm statistics per half
    torch.testing.assert_close(z_sep, z_parts)
    assert not torch.allclose(z_sep, z_joint)

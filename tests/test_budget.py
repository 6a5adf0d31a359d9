"""--max_minutes (ssl_min/runtime/budget.py): max_steps measured from the step time, written down, and a
stop at the budget when the machine slows down. Clocks are simulated: nothing here waits."""
import itertools
import json

import pytest
import torch

import train
from conftest import TINY
from ssl_min.runtime.budget import MARGIN, PROBE_STEPS, TimeBudget


def test_the_plan_is_the_steps_that_fit_in_what_is_left():
    now = [30.0]                                          # 30 s already spent decoding the cache
    budget = TimeBudget(2, start=0.0, clock=lambda: now[0])
    for step in range(1, PROBE_STEPS):
        now[0] += 0.5
        assert budget.tick(step) is None
    now[0] += 0.5
    planned = budget.tick(PROBE_STEPS)
    spent = 30 + 0.5 * PROBE_STEPS
    assert budget.seconds_per_step == pytest.approx(0.5)
    assert planned == PROBE_STEPS + int(MARGIN * (120 - spent) / 0.5)
    assert budget.tick(PROBE_STEPS + 1) is None           # planned once
    assert not budget.expired()
    now[0] = 120.0
    assert budget.expired()


def test_the_plan_is_capped_by_max_steps_and_counts_from_a_resumed_step():
    now = [0.0]
    budget = TimeBudget(60, start=0.0, cap=1000, clock=lambda: now[0])
    plans = []
    for step in range(301, 301 + PROBE_STEPS):            # a resume from step 300
        now[0] += 0.01
        plans.append(budget.tick(step))
    assert plans[:-1] == [None] * (PROBE_STEPS - 1) and plans[-1] == 1000
    with pytest.raises(ValueError):
        TimeBudget(0, start=0.0)


def simulated(monkeypatch, seconds_per_call):
    """train.py's budget on a simulated clock: call k (from 0) reads start + sum of the first k
    entries of seconds_per_call(k); train.py reads it twice a step (expired, tick)."""
    def make(minutes, start, cap=0):
        calls, t = itertools.count(), [start]

        def clock():
            t[0] += seconds_per_call(next(calls))
            return t[0]
        return TimeBudget(minutes, start, cap, clock=clock)
    monkeypatch.setattr(train, "TimeBudget", make)


def run(audio_dir, out, *extra):
    train.main(["--data", str(audio_dir), "--out", str(out), *TINY, "--precision", "fp32", "--schedule", "cosine",
                "--ckpt_every", "1000", *extra])


def test_train_sets_max_steps_from_the_budget_and_writes_it_down(audio_dir, tmp_path, monkeypatch, capsys):
    simulated(monkeypatch, lambda k: 0.25)                # 0.5 s a step
    out = tmp_path / "run"
    run(audio_dir, out, "--max_minutes", "0.5")
    # At step 50, 25 s are spent and the steps since step 10 took 0.5 s each: 5 s are left, so
    # 50 + floor(0.92 * 5 / 0.5) = 59 steps; the clock reaches 30 s only after step 60.
    planned = PROBE_STEPS + int(MARGIN * (30 - 25) / 0.5)
    assert planned == 59
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == planned and ckpt["config"]["max_steps"] == planned and ckpt["budget_planned"]
    assert json.loads((out / "config.json").read_text())["max_steps"] == planned
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["lr"] < 0.01 * max(r["lr"] for r in rows)    # the cosine reached its end
    text = capsys.readouterr().out
    assert "time budget 0.5 min: 0.4 min spent by step 50" in text and f"-> max_steps {planned}" in text


def test_train_stops_at_the_budget_with_a_checkpoint_when_the_machine_slows(audio_dir, tmp_path, monkeypatch,
                                                                           capsys):
    simulated(monkeypatch, lambda k: 0.25 if k < 2 * PROBE_STEPS else 5.0)   # 10 s a step after step 50
    out = tmp_path / "slow"
    run(audio_dir, out, "--max_minutes", "0.5")
    text = capsys.readouterr().out
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert PROBE_STEPS < ckpt["step"] < ckpt["config"]["max_steps"]
    assert f"spent at step {ckpt['step']}, of the {ckpt['config']['max_steps']} planned" in text

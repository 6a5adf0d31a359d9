"""What more compute buys: the gain over random init against training time, per objective, on the demo.

    python bench/compute_curve.py                                   # simclr and masked at 1, 4, 16 min, seed 0
    python bench/compute_curve.py --minutes 1 4 --seeds 0 1 --objective "masked=--objective masked --batch_size 64"

For every objective, budget and seed: `train.py --preset demo --max_minutes M` (the time budget measures
the step time over the first 50 steps and sets max_steps, so the cosine schedule ends with the budget;
ssl_min/runtime/budget.py), then the probe (`--features auto`) on the demo's tags and styles, as
bench/demo_ablation.py does it (runs reused when their folder is complete). The gain is pretrained
minus its own architecture's random init, on test and on valid. Printed as a table and drawn as
RUNS/compute_curve.png (one line per objective, test tags PR-AUC gain against minutes, log scale).
The machine's CPU is printed: budgets in minutes mean nothing without it.
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.demo_ablation import one  # noqa: E402
from bench.machine import cpu_name  # noqa: E402

OBJECTIVES = {"simclr": "", "masked": "--objective masked"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/demo")
    ap.add_argument("--runs", default="runs/compute_curve")
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 4, 16])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--objective", action="append", default=[], help="NAME=train.py flags (repeatable); "
                    "default: simclr (the demo preset) and masked (--objective masked)")
    args = ap.parse_args()
    objectives = dict(o.split("=", 1) for o in args.objective) if args.objective else OBJECTIVES
    data, runs = Path(args.data), Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "ssl_min.demo", str(data)], cwd=ROOT, check=True)
    cpu = cpu_name()
    print(f"CPU: {cpu}")
    table = {}
    for name, flags in objectives.items():
        for minutes in args.minutes:
            for seed in args.seeds:
                budget = f"{flags} --max_steps 1000000 --max_minutes {minutes:g}"
                rows, _, _ = one(f"{name}_{minutes:g}min", budget, seed, data, runs)
                steps = json.loads((runs / f"{name}_{minutes:g}min_s{seed}" / "config.json").read_text())["max_steps"]
                gain = {k: rows["pretrained"][k] - rows["random_init"][k]
                        for k in ("valid_tags_pr", "test_tags_pr", "test_style_acc")}
                table.setdefault(name, {}).setdefault(minutes, []).append({**gain, "steps": steps,
                                                                           "pretrained": rows["pretrained"]})
    (runs / "compute_curve.json").write_text(json.dumps({"cpu": cpu, "table": table}, indent=1))
    print("\n| objective | minutes | steps | gain: valid tags PR-AUC | gain: test tags PR-AUC | gain: test style accuracy |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, by_budget in table.items():
        for minutes, rows in by_budget.items():
            cell = lambda k: f"{np.mean([r[k] for r in rows]):+.3f}"             # noqa: E731
            print(f"| {name} | {minutes:g} | {' '.join(str(r['steps']) for r in rows)} | {cell('valid_tags_pr')} | "
                  f"{cell('test_tags_pr')} | {cell('test_style_acc')} |")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name, by_budget in table.items():
        xs = sorted(by_budget)
        ax.plot(xs, [np.mean([r["test_tags_pr"] for r in by_budget[m]]) for m in xs], "o-", label=name)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(f"training minutes ({cpu}, {os.cpu_count()} cores)")
    ax.set_ylabel("test tags PR-AUC − random init")
    ax.legend()
    fig.tight_layout()
    fig.savefig(runs / "compute_curve.png", dpi=120)
    print(f"wrote {runs / 'compute_curve.json'} and {runs / 'compute_curve.png'}")


if __name__ == "__main__":
    main()

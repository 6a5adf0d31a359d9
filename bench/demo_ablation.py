"""What the effects buy on the demo: pretraining with CLMR's chain against two crops only, over seeds.

    python bench/demo_ablation.py                                   # chain vs crops, seeds 0 1 2
    python bench/demo_ablation.py --seeds 0 --config "tau0.1=--temperature 0.1"   # any train.py flags

For every config and seed: `train.py --preset demo --seed S FLAGS` on DATA/unlabeled, then `probe.py`
(--features auto) on the demo's tags (DATA) and its styles (DATA/style). Printed per config, mean and
std over seeds: the validation scores (what a choice may read) and the test scores (what is
reported), for the pretrained encoder, its random init and MFCC statistics (the last two do not
depend on the pretraining, only on the seed of the random weights). Runs go to RUNS/<config>_s<S>;
a finished run folder is probed again, not retrained. Results: RUNS/ablation.json.
"""
import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.machine import cpu_name  # noqa: E402

CROPS = ("--p_polarity 0 --p_noise 0 --p_gain 0 --p_filter 0 --p_delay 0 --p_pitch 0 --p_reverb 0")
DEFAULT_CONFIGS = {"chain": "", "crops": CROPS}


def run(cmd, log):
    t = time.time()
    with open(log, "w") as f:
        done = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}; see {log}")
    return time.time() - t


def one(name, flags, seed, data, runs):
    out = runs / f"{name}_s{seed}"
    ckpt = out / "checkpoint.pt"
    times = {}
    if not (out / "probe_style.json").exists():
        if not ckpt.exists():                   # a run cut short: train.py --out RUN --resume finishes it
            times["train"] = run([sys.executable, "train.py", "--preset", "demo", "--data", str(data / "unlabeled"),
                                  "--seed", str(seed), "--out", str(out), *shlex.split(flags)], runs / f"{out.name}_train.log")
        times["probe"] = run([sys.executable, "probe.py", "--checkpoint", str(ckpt), "--data", str(data)],
                             runs / f"{out.name}_probe.log")
        times["probe"] += run([sys.executable, "probe.py", "--checkpoint", str(ckpt), "--data", str(data / "style"),
                               "--out", str(out / "probe_style.json")], runs / f"{out.name}_probe_style.log")
    tags = json.loads((out / "probe_checkpoint.json").read_text())["results"]
    style = json.loads((out / "probe_style.json").read_text())["results"]
    row = {}
    for enc in tags:
        row[enc] = {"valid_tags_pr": tags[enc]["head"]["valid_score"], "test_tags_pr": tags[enc]["pr_auc"],
                    "test_tags_roc": tags[enc]["roc_auc"], "valid_style_pr": style[enc]["head"]["valid_score"],
                    "test_style_acc": style[enc]["accuracy"],
                    "readout": [r.get("readout", {}).get("chosen", "-") for r in (tags[enc], style[enc])]}
    return row, times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/demo", help="the demo dataset (python -m ssl_min.demo writes it)")
    ap.add_argument("--runs", default="runs/ablation", help="where the run folders go")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--config", action="append", default=[],
                    help="NAME=train.py flags (repeatable); default: chain='' and crops (every effect's P = 0)")
    args = ap.parse_args()
    configs = dict(c.split("=", 1) for c in args.config) if args.config else DEFAULT_CONFIGS
    data, runs = Path(args.data), Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "ssl_min.demo", str(data)], cwd=ROOT, check=True)
    print(f"CPU: {cpu_name()}")
    results = json.loads((runs / "ablation.json").read_text()) if (runs / "ablation.json").exists() else {}
    for name, flags in configs.items():
        for seed in args.seeds:
            row, times = one(name, flags, seed, data, runs)
            results.setdefault(name, {"flags": flags, "seeds": {}})["seeds"][str(seed)] = row
            print(f"{name} seed {seed}: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()), flush=True)
            (runs / "ablation.json").write_text(json.dumps(results, indent=1))
    keys = ("valid_tags_pr", "valid_style_pr", "test_tags_pr", "test_tags_roc", "test_style_acc")
    print("\n| config | encoder | seeds | " + " | ".join(keys) + " | readout (tags, style) |")
    print("| --- " * (len(keys) + 4) + "|")
    for name in configs:
        per_seed = results[name]["seeds"]
        for enc in ("pretrained", "random_init", "mfcc"):
            rows = [per_seed[str(s)][enc] for s in args.seeds]
            cells = [f"{np.mean([r[k] for r in rows]):.3f} ± {np.std([r[k] for r in rows]):.3f}" for k in keys]
            readouts = " ".join("/".join(r["readout"]) for r in rows)
            print(f"| {name} | {enc} | {len(rows)} | " + " | ".join(cells) + f" | {readouts} |")


if __name__ == "__main__":
    main()

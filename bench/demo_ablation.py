"""What the effects buy on the demo: pretraining with the effects against two crops only, over seeds.

    python bench/demo_ablation.py                  # the preset's chain, CLMR's ranges, crops; seeds 0 1 2
    python bench/demo_ablation.py --seeds 0 --config "tau0.1=--temperature 0.1"   # any train.py flags

For every config and seed: `train.py --preset demo --seed S FLAGS` on DATA/unlabeled, then `probe.py
--rows pretrained` (--features auto) on the demo's tags (DATA) and its styles (DATA/style). The two
baselines do not depend on the pretraining, only on the architecture: per architecture, the random
init is probed once per seed (`probe.py --seed S`, its weights drawn from S) and MFCC statistics once.
Printed per config, mean and std over seeds: the validation scores (what a choice may read) and the
test scores (what is reported). Runs go to RUNS/<config>_s<S>; a finished run folder is probed
again, not retrained. Results: RUNS/ablation.json.
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
# The previous demo preset: CLMR's ranges (low-pass moved below 4 kHz for the 8-kHz rate), reverb 0.3.
CLMR_RANGES = ("--p_noise 0.01 --min_snr 0.0001 --max_snr 0.01 --p_gain 0.3 --p_reverb 0.3 --lowpass_min 1500 "
               "--highpass_min 200 --highpass_max 1200")
DEFAULT_CONFIGS = {"chain": "", "clmr_ranges": CLMR_RANGES, "crops": CROPS}
ARCH = ("sample_rate", "n_blocks", "width", "pool", "chunk_samples", "stem")
KEYS = ("valid_tags_pr", "valid_style_pr", "test_tags_pr", "test_tags_roc", "test_style_acc")


def run(cmd, log):
    t = time.time()
    with open(log, "w") as f:
        done = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}; see {log}")
    return time.time() - t


def probe_both(ckpt, data, out, tag, rows, seed=0):
    """probe.py on the tags and the styles -> ({row: scores}, seconds); results kept in OUT/<tag>_*.json."""
    t, outs = 0.0, {}
    for task, folder in (("tags", data), ("style", data / "style")):
        outs[task] = out / f"{tag}_{task}.json"
        if not outs[task].exists():
            t += run([sys.executable, "probe.py", "--checkpoint", str(ckpt), "--data", str(folder), "--rows", rows,
                      "--seed", str(seed), "--out", str(outs[task])], out / f"{tag}_{task}.log")
    tags, style = (json.loads(outs[k].read_text())["results"] for k in ("tags", "style"))
    return {enc: {"valid_tags_pr": tags[enc]["head"]["valid_score"], "test_tags_pr": tags[enc]["pr_auc"],
                  "test_tags_roc": tags[enc]["roc_auc"], "valid_style_pr": style[enc]["head"]["valid_score"],
                  "test_style_acc": style[enc]["accuracy"],
                  "readout": [r.get("readout", {}).get("chosen", "-") for r in (tags[enc], style[enc])]}
            for enc in tags}, t


def one(name, flags, seed, data, runs):
    """Trains (unless done) and probes one config at one seed -> (its rows, the architecture, times)."""
    out = runs / f"{name}_s{seed}"
    ckpt, times = out / "checkpoint.pt", {}
    if not ckpt.exists():                       # a run cut short: train.py --out RUN --resume finishes it
        times["train"] = run([sys.executable, "train.py", "--preset", "demo", "--data", str(data / "unlabeled"),
                              "--seed", str(seed), "--out", str(out), *shlex.split(flags)], runs / f"{out.name}_train.log")
    cfg = json.loads((out / "config.json").read_text())
    arch = "_".join(f"{k}{cfg.get(k)}" for k in ARCH)
    row, times["probe"] = probe_both(ckpt, data, out, "probe", "pretrained")
    base = runs / f"baselines_{arch}"
    base.mkdir(exist_ok=True)
    rand, times["random_init"] = probe_both(ckpt, data, base, f"random_s{seed}", "random_init", seed)
    mfcc, times["mfcc"] = probe_both(ckpt, data, base, "mfcc", "mfcc")
    return {**row, **rand, **mfcc}, arch, times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/demo", help="the demo dataset (python -m ssl_min.demo writes it)")
    ap.add_argument("--runs", default="runs/ablation", help="where the run folders go")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--config", action="append", default=[],
                    help="NAME=train.py flags (repeatable); default: chain='' (the preset), clmr_ranges, crops (every effect's P = 0)")
    args = ap.parse_args()
    configs = dict(c.split("=", 1) for c in args.config) if args.config else DEFAULT_CONFIGS
    data, runs = Path(args.data), Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "ssl_min.demo", str(data)], cwd=ROOT, check=True)
    print(f"CPU: {cpu_name()}")
    results = json.loads((runs / "ablation.json").read_text()) if (runs / "ablation.json").exists() else {}
    for name, flags in configs.items():
        for seed in args.seeds:
            row, arch, times = one(name, flags, seed, data, runs)
            entry = results.setdefault(name, {"flags": flags, "seeds": {}})
            entry["seeds"][str(seed)], entry["arch"] = row, arch
            print(f"{name} seed {seed}: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()), flush=True)
            (runs / "ablation.json").write_text(json.dumps(results, indent=1))
    print("\n| config | encoder | seeds | " + " | ".join(KEYS) + " | readout (tags/style) per seed |")
    print("| --- " * (len(KEYS) + 4) + "|")
    for name in configs:
        per_seed = results[name]["seeds"]
        for enc in ("pretrained", "random_init", "mfcc"):
            rows = [per_seed[str(s)][enc] for s in args.seeds]
            cells = [f"{np.mean([r[k] for r in rows]):.3f} ± {np.std([r[k] for r in rows]):.3f}" for k in KEYS]
            readouts = " ".join("/".join(r["readout"]) for r in rows)
            print(f"| {name} | {enc} | {len(rows)} | " + " | ".join(cells) + f" | {readouts} |")


if __name__ == "__main__":
    main()

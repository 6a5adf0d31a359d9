"""What the kNN monitor costs: the demo's pretraining with and without `--monitor data/demo`, the
same seed, one after the other on this machine, each timed from the command's start to its end.

    python bench/monitor.py [--preset demo] [--runs 1]

Prints each run's wall-clock time, the ratio, the monitor's readings (the first is the random init)
and the CPU. The two runs train bit for bit the same (tests/test_monitor.py); the difference is the
monitor's time: reading the labeled tracks once, and embedding them at every reading.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from machine import cpu_name  # noqa: E402
sys.path.insert(0, str(ROOT))
from ssl_min.data.demo import build  # noqa: E402


def timed_run(out, preset, extra):
    """-> (seconds, metrics rows) of `train.py --preset P --out OUT ...`, its output in OUT.log."""
    t = time.perf_counter()
    with open(f"{out}.log", "w") as log:
        code = subprocess.call([sys.executable, str(ROOT / "train.py"), "--preset", preset, "--out", str(out), *extra],
                               cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t
    if code != 0:
        raise SystemExit(f"train.py failed ({code}); see {out}.log")
    return seconds, [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="demo", help="train.py preset (its data: the demo's unlabeled pool)")
    ap.add_argument("--labeled", default="data/demo", help="the monitor's labeled set")
    ap.add_argument("--runs", type=int, default=1, help="pairs of runs (without, with), alternating")
    a = ap.parse_args()
    build(ROOT / "data" / "demo")
    work = Path(tempfile.mkdtemp(prefix="ssl_min_monitor_"))
    print(f"{cpu_name()}, {os.cpu_count()} cores; train.py --preset {a.preset}, with and without --monitor {a.labeled}")
    for r in range(a.runs):
        plain, _ = timed_run(work / f"plain{r}", a.preset, [])
        watched, rows = timed_run(work / f"monitor{r}", a.preset, ["--monitor", a.labeled])
        readings = [(row["step"], v) for row in rows for k, v in row.items() if k.startswith("knn_")]
        own = sum(float(line.rsplit("(", 1)[1].split(" s)")[0]) for line in open(f"{work / f'monitor{r}'}.log")
                  if line.startswith("monitor at step"))
        print(f"pair {r}: without {plain:.1f} s, with {watched:.1f} s: {100 * (watched / plain - 1):+.1f} %; "
              f"the {len(readings)} readings themselves took {own:.1f} s ({100 * own / watched:.1f} % of the run)")
        print("  readings (step, value): " + ", ".join(f"({s}, {v:.3f})" for s, v in readings))


if __name__ == "__main__":
    main()

"""Faults a real library meets, replayed: what held.

    python bench/faults.py               # the eight faults (tests/test_faults.py), then one command run
                                         # twice per objective, the second time beside a busy process
    python bench/faults.py --steps 20    # longer runs for the second part

Part 1 runs tests/test_faults.py (each fault reproduced on small generated data) and prints one row
per fault: held or not, and the test that shows it. Part 2 is the claim "the same command gives the
same numbers, whatever else the machine is doing": for every objective, a small run with
`--conv auto --precision auto` (the choices that are measured), then the same command again while
another process keeps a core busy; the two loss curves must agree to the last digit. The first run
measures the choices and writes them down (runtime/remembered.py, here in a fresh file), the second
reads them back. Every figure printed comes from this run; name the CPU beside it when you copy one.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAULTS = [
    ("1 a full disk is not bad audio", "test_a_full_disk_stops_the_build_in_one_line_and_marks_no_track_bad"),
    ("2 a malicious pickle is refused", "test_a_malicious_pickle_is_refused_without_running"),
    ("2 CLMR's checkpoints still load", "test_clmrs_lightning_hyper_parameters_load_without_pickle"),
    ("3 a damaged checkpoint: one line", "test_a_damaged_checkpoint_is_named_in_one_line_everywhere_it_is_read"),
    ("3 a cut-short metrics row", "test_a_half_written_metrics_row_does_not_block_resume"),
    ("4 a file replaced after the scan", "test_a_file_replaced_after_the_scan_is_never_cached_under_its_old_description"),
    ("5 a rebuild under a running job", "test_a_rebuild_never_deletes_a_file_that_a_running_job_may_still_read"),
    ("5 two builders at once", "test_two_builders_of_one_cache_take_turns"),
    ("6 a killed decode worker", "test_a_killed_decode_worker_is_named_and_never_waited_on"),
    ("7 SIGTERM mid-build", "test_sigterm_mid_build_leaves_no_temporary_file_and_the_next_start_finishes"),
    ("7 a damaged index or cached track", "test_a_damaged_index_is_rebuilt_and_a_cut_short_track_decoded_again"),
    ("8 auto choices remembered", "test_auto_choices_are_remembered_so_a_timing_that_flips_under_load_changes_nothing"),
]
OBJECTIVES = ["simclr", "moco", "vicreg", "byol", "cpc", "masked"]
SMALL = ["--sample_rate", "8000", "--n_blocks", "3", "--width", "0.125", "--pool", "mean", "--chunk_samples", "2000",
         "--batch_size", "4", "--num_workers", "0", "--log_every", "1", "--lowpass_min", "1500", "--lowpass_max", "3500",
         "--conv", "auto", "--precision", "auto"]


def cpu_name():
    from ssl_min.runtime.remembered import machine
    return machine().split(" | ")[0]


def part1():
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                        "tests/test_faults.py"], cwd=ROOT, capture_output=True, text=True)
        text = report.read_text() if report.exists() else ""
    import xml.etree.ElementTree as ET
    cases = {c.get("name"): c for c in ET.fromstring(text).iter("testcase")} if text else {}
    print("| fault | held | test (tests/test_faults.py) |\n| --- | --- | --- |")
    for what, test in FAULTS:
        case = cases.get(test)
        held = "not run" if case is None else ("no" if list(case) else "yes")
        print(f"| {what} | {held} | {test} |")


def small_tracks(root, n=10, sr=8000, seconds=1.0):
    """n one-second tracks of three random partials and a little noise (seeded) -> root."""
    import numpy as np
    import soundfile as sf
    root.mkdir(parents=True)
    rng, t = np.random.default_rng(0), np.arange(int(seconds * sr)) / sr
    for i in range(n):
        x = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(100, 1500, 3)) / 3 + 0.05 * rng.standard_normal(len(t))
        sf.write(root / f"track{i:03d}.wav", (0.5 * x).astype(np.float32), sr)
    return root


def part2(steps):
    print(f"\nthe same command twice, the second beside a busy process ({steps} steps, {cpu_name()}, "
          f"{os.cpu_count()} cores):\n\n| objective | last loss, run 1 | last loss, run 2 | same curve |\n| --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = small_tracks(tmp / "audio")
        env = {**os.environ, "SSL_MIN_CHOICES": str(tmp / "choices.json")}
        for objective in OBJECTIVES:
            curves = []
            for run in (1, 2):
                out = tmp / f"{objective}{run}"
                cmd = [sys.executable, "train.py", "--data", str(data), "--out", str(out), *SMALL,
                       "--max_steps", str(steps), "--objective", objective]
                burn = (subprocess.Popen([sys.executable, "-c", "while True: sum(i * i for i in range(10**6))"])
                        if run == 2 else None)
                try:
                    child = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
                finally:
                    if burn:
                        burn.kill()
                        burn.wait()
                if child.returncode:
                    print(child.stdout[-2000:], child.stderr[-2000:])
                    raise SystemExit(f"{objective}: train.py failed")
                curves.append([json.loads(r)["loss"] for r in (out / "metrics.jsonl").read_text().splitlines()])
            print(f"| {objective} | {curves[0][-1]!r} | {curves[1][-1]!r} | {'yes' if curves[0] == curves[1] else 'NO'} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6, help="optimizer steps per run in part 2")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores\n")
    part1()
    part2(args.steps)


if __name__ == "__main__":
    main()

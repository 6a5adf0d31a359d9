"""The decode-once cache on a growing library: what a first build, a rebuild after adding 1 % of
the files, a restart after a kill halfway, and one three-hour file cost on this machine.

    python bench/library.py [--files 300] [--seconds 20] [--hours 3] [--rate 22050]

Generates (seeded, in a temporary folder) a library of `--files` ogg files (tones and noise,
mono and stereo, 44.1 kHz) and one `--hours`-long stereo 44.1 kHz FLAC file, then times
`python -m ssl_min.prepare` on them, each a fresh process as a user would run it:
  1. the first build;  2. the same after adding 1 % more files;  3. a build killed when half the
  tracks were decoded, then restarted (the restart's time);  4. the long file alone, with the
  peak resident memory of the largest process (getrusage of the children, workers included).
Prints the CPU and every figure; nothing is asserted.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from machine import cpu_name  # noqa: E402
# A wrapper that runs a command and prints the peak resident memory (KiB) of its largest process.
PEAK = "import resource, subprocess, sys; subprocess.check_call(sys.argv[1:]); " \
       "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"


def tone(seconds, rate, channels, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(80, 2000, 3)) / 4 + 0.01 * rng.standard_normal(len(t))
    return np.repeat(x[:, None], channels, 1).astype(np.float32) * 0.5


def generate(folder, n, seconds, start=0):
    """n ogg files, each written 10 s at a time (libsndfile's vorbis encoder has crashed on one long write)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        x = tone(seconds, 44100, 1 + i % 2, i)
        with sf.SoundFile(folder / f"{i:04d}.ogg", "w", 44100, x.shape[1], format="OGG") as f:
            for j in range(0, len(x), 441000):
                f.write(x[j:j + 441000])


def long_file(path, hours):
    """A stereo 44.1 kHz FLAC of `hours`, written a minute at a time (never whole in memory)."""
    with sf.SoundFile(path, "w", 44100, 2, format="FLAC") as f:
        for minute in range(int(hours * 60)):
            f.write(tone(60, 44100, 2, minute))


def prepare(src, dst, rate, log):
    """`python -m ssl_min.prepare SRC DST`, a fresh process -> (seconds, the process)."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "ssl_min.prepare", str(src), str(dst), "--sample_rate", str(rate)],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    return t, proc


def timed(src, dst, rate, log):
    t, proc = prepare(src, dst, rate, log)
    if proc.wait() != 0:
        raise SystemExit(f"prepare failed; see {log.name}")
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=300, help="ogg files in the library")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each")
    ap.add_argument("--hours", type=float, default=3.0, help="length of the one long file (0: skip it)")
    ap.add_argument("--rate", type=int, default=22050, help="the model's rate")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ssl_min_library_"))
    lib, log = work / "lib", open(work / "prepare.log", "w")
    print(f"{cpu_name()}, {os.cpu_count()} cores; {a.files} ogg files of {a.seconds:g} s at 44.1 kHz -> {a.rate} Hz")
    generate(lib, a.files, a.seconds)
    first = timed(lib, work / "cache", a.rate, log)
    print(f"first build: {first:.1f} s")
    extra = max(1, a.files // 100)
    generate(lib, extra, a.seconds, start=a.files)
    again = timed(lib, work / "cache", a.rate, log)
    print(f"rebuild after adding {extra} files (1 %): {again:.1f} s = {100 * again / first:.1f} % of the first build")

    shutil.rmtree(work / "cache")
    t, proc = prepare(lib, work / "cache", a.rate, log)
    half = (a.files + extra) // 2
    while len(list((work / "cache" / "tracks").glob("*.npy"))) < half and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list((work / "cache" / "tracks").glob("*.npy")))
    restart = timed(lib, work / "cache", a.rate, log)
    print(f"killed with {done} of {a.files + extra} tracks decoded; the restart took {restart:.1f} s = "
          f"{100 * restart / first:.1f} % of a first build")

    if a.hours > 0:
        (work / "long").mkdir()
        long_file(work / "long" / "mix.flac", a.hours)
        t = time.perf_counter()
        child = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "ssl_min.prepare", str(work / "long"),
                                str(work / "long_cache"), "--sample_rate", str(a.rate)],
                               cwd=ROOT, capture_output=True, text=True)
        if child.returncode != 0:
            raise SystemExit(child.stdout[-2000:] + child.stderr[-2000:])
        peak = int(child.stdout.split()[-1]) * 1024
        print(f"one {a.hours:g}-hour stereo 44.1 kHz FLAC: {time.perf_counter() - t:.1f} s, peak resident memory "
              f"of the largest process {peak / 2**30:.2f} GiB")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()

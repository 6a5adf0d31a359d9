"""Decoding a library into the cache, in processes that may fail: every file either decoded whole,
or named with why not, and never a wait on a process that died.

    decode_track((track, destination, dtype)) -> (path, None, None), or (path, reason, kind)
    decode_all(jobs, n)                       -> yields (job, result) as each finishes
    worker_count(requested, n_jobs, seconds)  -> how many processes to decode with

A result's kind says whose fault a failure is, because each asks for something else:
* "bad": the file cannot be decoded (corrupt, not audio): left out until the file changes;
* "disk": writing the cache failed (disk full, a file-size limit, a read-only disk): nothing is wrong
  with the audio, so the caller stops the build and marks nothing bad;
* "again": out of memory, a disk read error, the file changed or removed since the scan, or the
  worker killed (the OOM killer): left out of this start and tried again at the next.
A worker that dies breaks the pool (concurrent.futures reports it, where multiprocessing.Pool waits
forever): the jobs it left are retried one at a time, each in a pool of its own, so the one that
kills its process is named and the others are decoded.
"""
import errno
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from ssl_min.data.index import file_stamp
from ssl_min.runtime.atomic import atomic_write

BLOCK = 1 << 20                   # model-rate samples decoded at a time (a worker holds a few times this)
SMALL_JOB = 600                   # seconds of audio below which decoding stays in this process
DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS}   # writing cannot succeed: stop the build


class Changed(Exception):
    """The audio file is not the one the scan checked (replaced, changed or removed since)."""


def decode_track(job):
    """job: (track, destination, dtype) -> (path, None, None) once destination holds the whole track,
    else (path, the reason, kind): kind "bad" (the file cannot be decoded: left out until it changes),
    "disk" (writing failed: disk full, file-size limit) or "again" (out of memory, changed since the
    scan, a read error of the disk: tried again at the next start). Never raises, so that a pool
    outlives a bad file."""
    track, dst, dtype = job
    block = track.ratio[1] * (BLOCK // track.ratio[1])           # on the resampler's grid

    def unchanged():
        try:
            stamp = file_stamp(track.path)
        except OSError:
            stamp = None
        if track.stamp is not None and stamp != track.stamp:
            raise Changed("changed or removed since the scan")

    def write(tmp):                               # plain writes: a memmap's dirty pages would count as memory
        unchanged()
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                     "shape": (track.length,)})
            for start in range(0, track.length, block):
                x = track.read(start, min(block, track.length - start)).numpy()
                f.write((np.round(np.clip(x, -1, 1) * 32767) if dtype == "int16" else x).astype(dtype).tobytes())
        unchanged()                               # not replaced while it was read

    try:
        atomic_write(dst, write)
        return track.path, None, None
    except Changed as e:
        return track.path, str(e), "again"
    except OSError as e:                          # the machine, not the audio
        kind = "disk" if e.errno in DISK_FULL else "again"
        return track.path, f"{'writing' if kind == 'disk' else 'reading'} failed ({e.strerror or e})", kind
    except MemoryError:
        return track.path, "out of memory while decoding", "again"
    except Exception as e:  # noqa: BLE001 (any decoder error: the file is named and skipped)
        return track.path, f"decoding failed ({type(e).__name__}: {str(e)[:120]})", "bad"


def _stop_on_sigterm():
    """In a decode worker: SIGTERM raises SystemExit, so the temporary file is removed on the way out."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def decode_all(jobs, n):
    """Decode every job with n processes (1: in this one) -> yields (job, decode_track's result), as
    they finish; the jobs a dead worker left are retried one at a time (the module doc)."""
    if n == 1:
        yield from ((job, decode_track(job)) for job in jobs)
        return
    context = multiprocessing.get_context("spawn")   # not fork: a forked torch process can deadlock
    left, alone = list(jobs), False
    while left:
        pool = ProcessPoolExecutor(1 if alone else n, mp_context=context, initializer=_stop_on_sigterm)
        try:
            batch = left[:1] if alone else left
            futures = {pool.submit(decode_track, job): job for job in batch}
            left, broken = left[len(batch):], []
            for future in as_completed(futures):
                if isinstance(future.exception(), BrokenProcessPool):
                    broken.append(futures[future])
                else:
                    yield futures[future], future.result()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        if broken and alone:
            yield broken[0], (broken[0][0].path, "its decoding process died (killed: out of memory?)", "again")
        elif broken:
            left, alone = broken + left, True


def worker_count(requested, n_jobs, seconds):
    """Processes to decode with: requested, else the cores, fewer when the available memory could not
    hold that many workers (~0.5 GB each, torch included), and one (this process, no pool to start)
    for less than SMALL_JOB seconds of audio, where starting workers costs more than it saves."""
    if requested:
        return max(1, min(requested, n_jobs))
    if seconds < SMALL_JOB:
        return 1
    cores = os.cpu_count() or 1
    try:
        available = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemAvailable"))
    except (OSError, StopIteration, ValueError):
        available = 1 << 34
    return max(1, min(cores, n_jobs, available // (512 << 20)))

"""Keep freed memory in the process: glibc's allocator, told not to hand big blocks back.

A SampleCNN step on the CPU allocates and frees activations of tens to hundreds of MB, dozens of
times. glibc serves every block above 32 MB with a fresh mmap and returns it with munmap on free,
so each new activation first page-faults its way through zeroed pages: on 2 AVX2 cores, writing a
fresh 54 MB tensor (relu, a copy) took ~21 ms, against ~4 ms into recycled memory. PyTorch's CPU
allocator has no cache of its own (CUDA's has). Two mallopt settings give it one: serve large
blocks from the heap (M_MMAP_MAX = 0) and never trim freed memory off the heap's top below 2 GB
(M_TRIM_THRESHOLD). Measured with bench/train.py (bench/performance_log.md): ~1.7x on a whole step,
for CLMR's formulation and ours alike. The cost: the process keeps its peak memory until it exits.

`keep_freed_memory()` applies them, on Linux with glibc only (elsewhere it does nothing and says
so); worker processes forked afterwards inherit them. `keep_freed_memory(False)` puts glibc's
defaults back (bench/train.py times CLMR's formulation both ways).
"""
import ctypes
import ctypes.util
import platform

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4          # glibc's malloc.h
SETTINGS = {True: (0, 2 ** 31 - 1), False: (65536, 128 * 1024)}   # (mmap max, trim threshold); False: glibc's defaults


def keep_freed_memory(keep: bool = True) -> str:
    """Apply the settings (keep=False: glibc's defaults) -> one line saying what the allocator does."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "system allocator unchanged (not Linux/glibc)"
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    mmap_max, trim = SETTINGS[keep]
    if libc.mallopt(M_MMAP_MAX, mmap_max) != 1 or libc.mallopt(M_TRIM_THRESHOLD, trim) != 1:
        return "glibc mallopt refused: system allocator unchanged"
    return ("glibc malloc keeps freed memory for reuse (mmap off, trim threshold 2 GB)" if keep else
            "glibc malloc with its default settings (large blocks mmapped, freed memory returned)")

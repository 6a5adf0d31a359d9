"""Measured choices, remembered per machine: the same command gives the same numbers.

`--precision auto` and `--conv auto` time two ways of computing and take the faster. A timing is
only as steady as the machine: with another job loading the CPU the faster one measured slower,
the choice flipped between two starts, and since the two ways round differently, two runs of one
command ended on different losses. So the first measurement of a question (its shapes, its
precision) on a machine (its CPU and its feature flags, torch's version, the thread count) is
written down, and every later start on that machine takes the answer from there, said in the
log. Delete the file to measure again (after a hardware or library change that the key misses).

    remembered(question, measure) -> (answer, why)    measure() -> (answer, why), called at most once

The file: $SSL_MIN_CHOICES, else ~/.cache/ssl_min/choices.json; one JSON object, written whole
(a temporary file, then a rename). An unreadable file counts as empty (and is written again).
"""
import hashlib
import json
import os
import platform
from pathlib import Path

import torch

from ssl_min.runtime.atomic import write_text_atomic

ENV = "SSL_MIN_CHOICES"


def choices_file() -> Path:
    return Path(os.environ.get(ENV) or Path.home() / ".cache" / "ssl_min" / "choices.json")


def machine() -> str:
    """What a measurement depends on besides the question: the CPU (its name, family, model and a
    digest of its feature flags: two CPUs sold under one name can differ, e.g. in AVX512-BF16),
    torch's version, the thread count."""
    info = {}
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = hashlib.sha1(info.get("flags", "").encode()).hexdigest()[:8]
    name = info.get("model name") or platform.processor() or platform.machine()
    cpu = f"{name} (family {info.get('cpu family', '?')}, model {info.get('model', '?')}, flags {flags})"
    return f"{cpu} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def _read(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def remembered(question: dict, measure) -> tuple:
    """-> (answer, why): the answer written down for this machine and question, else measure()'s,
    written down for the next start (a file that cannot be written: measured each time, said)."""
    path, key = choices_file(), json.dumps([machine(), question], sort_keys=True)
    saved = _read(path).get(key)
    if saved is not None:
        return saved["answer"], f"remembered for this machine from its first measurement ({saved['why']}; {path})"
    answer, why = measure()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps({**_read(path), key: {"answer": answer, "why": why}}, indent=1))
        return answer, f"measured now, remembered in {path}: {why}"
    except OSError as e:
        return answer, f"measured now (not remembered: {path}: {e.strerror or e}): {why}"

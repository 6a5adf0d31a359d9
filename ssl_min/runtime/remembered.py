"""Measured choices, remembered per machine: the same command gives the same numbers.

`--precision auto` and `--conv auto` time two ways of computing and take the faster. A timing is
only as steady as the machine: with another job loading the CPU, one start measured the reference
formulation at 35 ms and the fast one at 79 ms, the next 40 against 25, and the two formulations
round differently, so two runs of one command ended on different losses. So the first measurement
of a question (its shapes, its precision) on a machine (its CPU, torch's version, the thread count)
is written down, and every later start on that machine takes the answer from there, said in the
log. Delete the file to measure again (after a hardware or library change that the key misses).

    remembered(question, measure) -> (answer, why)    measure() -> (answer, why), called at most once

The file: $SSL_MIN_CHOICES, else ~/.cache/ssl_min/choices.json; one JSON object, written whole
(a temporary file, then a rename). An unreadable file counts as empty (and is written again).
"""
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
    """What a measurement depends on besides the question: the CPU's name, torch, the threads."""
    name = platform.processor() or platform.machine()
    try:
        name = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name} | torch {torch.__version__} | {torch.get_num_threads()} threads"


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

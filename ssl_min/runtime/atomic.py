"""Files that a kill can never leave half-written: write to a temporary name, then rename.

`os.replace` is atomic on POSIX and Windows, so a reader sees the old file or the new one, never
a mix. This is the one place the project writes files that must survive a crash: checkpoints,
the index cache, cached embeddings, trimmed metrics, results. `trim_metrics` keeps a run's log
consistent with its checkpoint after a kill.
"""
import json
import os
from pathlib import Path

import torch


def atomic_write(path, write):
    """write(tmp_path) fills a temporary file next to `path`; then it replaces `path` at once."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_atomic(obj, path):
    """torch.save, atomically (a plain dict of tensors and numbers loads with weights_only=True)."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def write_text_atomic(path, text):
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def trim_metrics(path, step):
    """Drop rows of metrics.jsonl logged after the checkpoint's step (a kill -9 between two
    checkpoints leaves them): the resumed run logs those steps again, so each step appears once.
    A row cut short (a kill or a full disk mid-write) is dropped too, with a note."""
    path = Path(path)
    if path.exists():
        rows, broken = [], 0
        for r in path.read_text().splitlines():
            try:
                if r and json.loads(r)["step"] <= step:
                    rows.append(r)
            except (json.JSONDecodeError, KeyError, TypeError):
                broken += 1
        if broken:
            print(f"note: {path}: {broken} unreadable row(s) dropped (cut short by a kill or a full disk?)")
        write_text_atomic(path, "".join(r + "\n" for r in rows))

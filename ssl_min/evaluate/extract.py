"""Features of labeled tracks for the probe: decode each track once, run every extractor on it.

    tracks -> non-overlapping chunks (n, 1, chunk) per track  ->  per extractor: (n_chunks, D)
              features and (n_chunks,) owner (the track's index), for every split

Tracks are decoded in DataLoader workers (one item = one whole track), chunks of many tracks are
batched together, and each batch goes through every extractor (pretrained encoder, random-init
encoder, MFCC statistics), so the audio is read once for all rows of the report. Results are
cached on disk per extractor under a key that names its weights and the data, so a second probe of
the same checkpoint reads them back.

`recalibrate_batchnorm` gives a random-init encoder BatchNorm statistics measured on audio (the
pretrained encoder's come from pretraining): without it, a random encoder is probed with running
statistics at their initial values (mean 0, variance 1), which is an unfair baseline.
"""
import hashlib
import json
import os
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from ssl_min.runtime.atomic import save_atomic
from ssl_min.data.audio import track_chunks
from ssl_min.data.index import file_stamp
from ssl_min.models.load import DamagedFile, load_tensors


class _TrackChunks(Dataset):
    """Item i: (all non-overlapping chunks of track i (n, 1, chunk), i)."""

    def __init__(self, tracks, chunk):
        self.tracks, self.chunk = tracks, chunk

    def __len__(self):
        return len(self.tracks)

    def __getitem__(self, i):
        return track_chunks(self.tracks[i], self.chunk), i


def chunk_batches(tracks, chunk, batch, num_workers):
    """Yields (x (b, 1, chunk), owner (b,)) across tracks, in track order."""
    loader = DataLoader(_TrackChunks(tracks, chunk), batch_size=None, num_workers=num_workers)
    buf, own = [], []
    for x, i in loader:
        buf.append(x)
        own.append(torch.full((len(x),), i, dtype=torch.long))
        while sum(len(b) for b in buf) >= batch:
            xs, os_ = torch.cat(buf), torch.cat(own)
            yield xs[:batch], os_[:batch]
            buf, own = [xs[batch:]], [os_[batch:]]
    if buf and sum(len(b) for b in buf):
        yield torch.cat(buf), torch.cat(own)


def extract(extractors, sets, chunk, device, batch=64, num_workers=0, dtype=torch.float32):
    """extractors: {name: module (B, 1, chunk) -> (B, D)}, sets: {split: LabeledSet}
    -> {name: {split: (features float32 (n, D), owner (n,))}}. No gradients; modules in eval."""
    ctx = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    out = {name: {} for name in extractors}
    for m in extractors.values():
        m.eval()
    for split, ls in sets.items():
        feats, owners = {name: [] for name in extractors}, []
        with torch.no_grad(), ctx:
            for x, owner in chunk_batches(ls.tracks, chunk, batch, num_workers):
                x = x.to(device)
                for name, m in extractors.items():
                    feats[name].append(m(x).float().cpu())
                owners.append(owner)
        for name in extractors:
            out[name][split] = (torch.cat(feats[name]), torch.cat(owners))
    return out


def stamp_or_none(path):
    """data.index.file_stamp, or None for a track with no file behind it (made in memory)."""
    try:
        return file_stamp(path)
    except OSError:
        return None


def cached_extract(extractors, keys, sets, chunk, device, cache_dir, **kw):
    """extract(), with each extractor's features cached in cache_dir under a hash of its key
    (weights id or settings), the chunk length and the tracks of every split (path, size, mtime).
    Paths are normalised, so two labelings of the same audio (the demo's tags and styles: ../..)
    share one entry."""
    tracks = {s: [(os.path.normpath(t.path), stamp_or_none(t.path)) for t in ls.tracks]    # changed files: new key
              for s, ls in sets.items()}
    paths = {name: Path(cache_dir) / (hashlib.sha1(json.dumps([keys[name], chunk, tracks]).encode())
                                      .hexdigest()[:16] + ".pt") for name in extractors}
    out = {}
    for name, p in paths.items():
        if p.exists():
            try:
                out[name] = load_tensors(p, "feature cache")
            except DamagedFile as e:              # a cache entry: computed again, nothing is lost
                print(f"note: {e.code.split(';')[0]}; computing it again")
    todo = {name: m for name, m in extractors.items() if name not in out}
    if todo:
        fresh = extract(todo, sets, chunk, device, **kw)
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        for name, value in fresh.items():
            save_atomic(value, paths[name])
        out.update(fresh)
    return out


def recalibrate_batchnorm(encoder, tracks, chunk, device, max_chunks=2048, batch=64, seed=0):
    """Re-estimate every BatchNorm's running mean and variance on chunks of `tracks` (an equal
    average over batches: momentum None), then back to eval mode. Weights are untouched."""
    bns = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    order = torch.randperm(len(tracks), generator=torch.Generator().manual_seed(seed)).tolist()
    encoder.train()
    seen = 0
    with torch.no_grad():
        for x, _ in chunk_batches([tracks[i] for i in order], chunk, batch, 0):
            if len(x) < 2:
                break                      # BatchNorm in train mode needs two values per channel
            encoder(x[:max_chunks - seen].to(device))
            seen += min(len(x), max_chunks - seen)
            if seen >= max_chunks:
                break
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    encoder.eval()
    return seen

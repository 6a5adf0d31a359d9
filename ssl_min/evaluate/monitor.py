"""The kNN monitor: is the representation getting better while it trains? (`train.py --monitor`)

The loss does not say: on real music, runs whose loss ended 0.4 lower probed no better. The
monitor reads what the probe reads, cheaply, every `--monitor_every` steps:

    labeled set (any layout probe.py accepts) -> its train and valid tracks (at most MAX_TRACKS of
    each, evenly spread over the split), a few chunks each, decoded once and held in memory:
    x (N, 1, chunk), owner (N,); bounded whatever the set's size (MagnaTagATune whole would be ~14 GB)
    encoder, eval mode, no gradients -> chunk embeddings -> track embeddings (mean over chunks)
    weighted kNN (knn.py): train tracks vote for each valid track
    -> {"knn_accuracy": ...} for classes, {"knn_pr_auc": macro PR-AUC} for tags

It never touches the test split, draws no random numbers, and puts every module of the encoder
back in the mode it was in (BatchNorm's running statistics are read, not moved, in eval mode): a run
with the monitor trains exactly as one without it (tests/test_monitor.py).
"""
from contextlib import nullcontext

import numpy as np
import torch

from ssl_min.data.audio import split_chunks
from ssl_min.data.labeled import carve_validation, load_labeled
from ssl_min.evaluate.knn import knn_scores
from ssl_min.evaluate.linear_probe import metrics, one_hot


MAX_TRACKS = 500                  # per split: the monitor's memory is bounded by 2 x this x per_track chunks


def spread(items, n):
    """At most n of `items`, evenly spread over them, in order (all when there are no more than n)."""
    if len(items) <= n:
        return list(range(len(items)))
    return np.unique(np.linspace(0, len(items) - 1, n).round().astype(int)).tolist()


def spread_chunks(x: torch.Tensor, chunk: int, per_track: int) -> torch.Tensor:
    """A track (T,) -> up to `per_track` of its non-overlapping chunks, evenly spread: (n, chunk)."""
    chunks = split_chunks(x, chunk)                                   # (all, chunk)
    keep = np.unique(np.linspace(0, len(chunks) - 1, min(per_track, len(chunks))).round().astype(int))
    return chunks[torch.as_tensor(keep)]


class KNNMonitor:
    """monitor(encoder, ctx=None) -> {metric name: value}; see the module doc. ctx: the autocast
    context the run computes in (None: float32)."""

    def __init__(self, root, sample_rate, chunk, per_track=3, k=20, temperature=0.07, batch=256, device="cpu",
                 verbose=True, max_tracks=MAX_TRACKS):
        sets = load_labeled(root, sample_rate)
        if "valid" not in sets:
            sets = {**sets, **carve_validation(sets["train"])}
        self.task, self.names = sets["train"].task, sets["train"].names
        self.k, self.temperature, self.batch, self.device = k, temperature, batch, torch.device(device)
        self.x, self.owner, self.targets = {}, {}, {}
        kept = {}
        for split in ("train", "valid"):
            ls = sets[split]
            kept[split] = spread(ls.tracks, max_tracks)
            parts = [spread_chunks(ls.tracks[i].read_all(), chunk, per_track) for i in kept[split]]
            self.x[split] = torch.cat(parts)[:, None]                         # (N, 1, chunk)
            self.owner[split] = torch.cat([torch.full((len(p),), i) for i, p in enumerate(parts)])
            self.targets[split] = np.asarray(ls.targets)[kept[split]]
        self.metric = "knn_accuracy" if self.task == "multiclass" else "knn_pr_auc"
        if verbose:
            print(f"monitor: {root}, {len(kept['train'])} train and {len(kept['valid'])} valid tracks"
                  + ("" if len(kept["train"]) + len(kept["valid"]) == len(sets["train"].tracks) + len(sets["valid"].tracks)
                     else f" (at most {max_tracks} of each split, evenly spread)")
                  + f", <= {per_track} chunks each; weighted kNN (k {k}, T {temperature}) -> {self.metric}")

    def embed(self, encoder, split, ctx):
        """-> (n_tracks, D) float64: the mean of each track's chunk embeddings."""
        x, owner = self.x[split], self.owner[split]
        with torch.no_grad(), ctx:
            h = torch.cat([encoder(x[i:i + self.batch].to(self.device)).double().cpu()
                           for i in range(0, len(x), self.batch)])
        n = int(owner.max()) + 1
        summed = torch.zeros(n, h.shape[1], dtype=h.dtype).index_add_(0, owner, h)
        return summed / torch.bincount(owner, minlength=n)[:, None]

    def __call__(self, encoder, ctx=None):
        modes = [m.training for m in encoder.modules()]
        encoder.eval()
        try:
            train, valid = (self.embed(encoder, s, ctx or nullcontext()) for s in ("train", "valid"))
        finally:
            for m, mode in zip(encoder.modules(), modes):
                m.training = mode
        y = self.targets["train"]
        votes = torch.as_tensor(one_hot(y, len(self.names)) if self.task == "multiclass" else y)
        scores = knn_scores(train, votes, valid, self.k, self.temperature).numpy()
        result = metrics(self.targets["valid"], scores, self.names, self.task)[0]
        return {self.metric: result["accuracy" if self.task == "multiclass" else "pr_auc"]}

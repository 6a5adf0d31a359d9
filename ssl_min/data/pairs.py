"""Positive pairs for pretraining: two chunks of one track, from an endless stream of pair ids.

    pair id k  ->  (x1 (1, chunk), x2 (1, chunk), track index)

* Tracks are drawn in proportion to their length (their number of possible chunk starts), so an
  hour-long track is drawn as often as twenty three-minute ones and every second of audio is
  equally likely to be heard. The two offsets are independent and uniform in the track.
* All randomness of pair k comes from a generator seeded by (seed, k) alone: workers never repeat
  each other, and a resumed run draws exactly the pairs the uninterrupted one would have.
* `StreamSampler` yields ids forever (rank r of w takes, at step s, the ids (s * w + r) * B ...
  (s * w + r) * B + B - 1), so the DataLoader iterator is made once and its workers prefetch
  straight across what used to be epoch ends; the batch never shrinks.
* A track can appear twice in one batch (always, with fewer tracks than the batch). Its two
  pairs must not serve as each other's negatives: the track index travels with the batch and
  the loss masks those entries (`NTXent(..., ids=)`).
"""
import hashlib

import torch
from torch.utils.data import Dataset, Sampler


def item_generator(seed, sample_id):
    """A torch.Generator that depends only on (seed, sample_id): workers and resumes agree."""
    digest = hashlib.blake2b(f"{seed}:{sample_id}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def keep_long_enough(tracks, n_samples, verbose=True):
    """Drops tracks shorter than one chunk, counted and named (for pairs, never padded)."""
    short = [t for t in tracks if t.length < n_samples]
    if short and verbose:
        names = ", ".join(t.path for t in short[:3])
        print(f"skipped {len(short)} tracks shorter than one chunk ({n_samples} samples): {names}"
              + (" ..." if len(short) > 3 else ""))
    kept = [t for t in tracks if t.length >= n_samples]
    if not kept:
        raise ValueError(f"no track is at least one chunk ({n_samples} samples) long")
    return kept


class PairDataset(Dataset):
    """Pair id -> (x1, x2, track index); x1, x2: (1, chunk). Index with ids from StreamSampler.
    `transform`, if given, augments each chunk in the worker (else augment on the device).
    views=1 (CPC): id -> (x1, track index), the pair's first chunk alone (the same draw)."""

    def __init__(self, tracks, chunk_samples, seed=0, transform=None, verbose=True, views=2):
        if views not in (1, 2):
            raise ValueError(f"views must be 1 or 2, got {views}")
        self.tracks = keep_long_enough(tracks, chunk_samples, verbose)
        self.chunk, self.seed, self.transform, self.views = chunk_samples, seed, transform, views
        # Start positions on each track's resampling grid (a chunk read from the file then equals
        # the same samples of the whole resampled track; see audio.Track.read).
        self.n_starts = torch.tensor([(t.length - self.chunk) // t.ratio[1] + 1 for t in self.tracks])
        self.cum = torch.cumsum(self.n_starts, 0)

    def __len__(self):
        """Non-overlapping chunks in the data: the pairs of one 'epoch' (a unit for logging)."""
        return sum(t.length // self.chunk for t in self.tracks)

    def draw(self, sample_id):
        """-> (track index, [offset1, offset2], generator): a track by length, two offsets."""
        g = item_generator(self.seed, sample_id)
        u = torch.randint(int(self.cum[-1]), (1,), generator=g)          # a start among all starts
        i = int(torch.searchsorted(self.cum, u, right=True))              # -> its track
        period = self.tracks[i].ratio[1]
        return i, [int(k) * period for k in torch.randint(int(self.n_starts[i]), (2,), generator=g)], g

    def __getitem__(self, sample_id):
        i, offsets, g = self.draw(sample_id)
        track = self.tracks[i]
        xs = [track.read(a, self.chunk)[None] for a in offsets[:self.views]]        # (1, chunk) each
        if self.transform is not None:
            xs = [self.transform(x, generator=g) for x in xs]
        return (*xs, i)


class StreamSampler(Sampler):
    """Endless pair ids for one process, from step `start`: (step * world + rank) * batch + j."""

    def __init__(self, batch_size, start_step=0, rank=0, world=1):
        self.batch, self.start, self.rank, self.world = batch_size, start_step, rank, world

    def __iter__(self):
        step = self.start
        while True:
            base = (step * self.world + self.rank) * self.batch
            yield from range(base, base + self.batch)
            step += 1

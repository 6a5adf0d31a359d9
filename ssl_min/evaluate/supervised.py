"""The ceiling of a probe: the same encoder trained end to end on the labels (CLMR's supervised row).

    train_supervised(encoder, train, valid, chunk, steps, batch, lr, device, seed, evaluations)
        -> (the encoder at its best validation point, in eval mode,
            {"steps", "batch", "lr", "chosen_step", "valid": {step: score}, "seconds"})

The random-init row of a probe is what an architecture gives for nothing; this row is what labels
give it for the same budget (the pretraining run's steps and batch). Between the two lies the
headroom a task offers a learner: a self-supervised encoder is worth the share of that gap it
closes. On a task where the gap is small, no learner can show much.

Training: random crops of `chunk` samples from the train split's tracks (drawn like pretraining's
chunks, by length, from a seeded stream: data/pairs.py), a linear head on the encoder's output, Adam with a cosine
schedule, binary cross-entropy per tag (multi-label) or cross-entropy (multi-class). Every
steps / evaluations steps the model's own predictions on the validation split are scored at
track level (macro PR-AUC, the probe's criterion) and the best point is kept: the "epoch chosen on
validation". The head is then dropped and the frozen encoder is probed like every other row.
"""
import copy
import math
import time

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from ssl_min.data.pairs import PairDataset, StreamSampler
from ssl_min.evaluate.extract import extract
from ssl_min.evaluate.linear_probe import metrics, track_scores


def valid_score(encoder, head, valid, chunk, device, task):
    """Track-level macro PR-AUC of the model's own predictions on `valid` (chunks averaged per track),
    through the probe's own extraction and per-track averaging (extract.py, linear_probe.py)."""
    x, owner = extract({"encoder": encoder}, {"valid": valid}, chunk, device)["encoder"]["valid"]   # (n, D) on CPU
    with torch.no_grad():
        scores = track_scores(lambda f: head(f.to(device, head.weight.dtype)).double().cpu(), x, owner,
                              len(valid.tracks), task)
    score = metrics(valid.targets, scores, valid.names, task)[0]["pr_auc"]
    return score if math.isfinite(score) else -math.inf          # nothing scorable: the last point is kept


def train_supervised(encoder, train, valid, chunk, steps, batch, lr, device, seed=0, evaluations=8, num_workers=0):
    t0 = time.perf_counter()
    task = train.task
    torch.manual_seed(seed)
    crops = PairDataset(train.tracks, chunk, seed=seed, verbose=False, views=1)
    where = {id(t): j for j, t in enumerate(train.tracks)}
    targets = torch.as_tensor(np.asarray(train.targets)[[where[id(t)] for t in crops.tracks]])
    head = nn.Linear(encoder.out_dim, len(train.names)).to(device)
    encoder.to(device)
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=lr)
    loss_fn = (nn.BCEWithLogitsLoss() if task == "multilabel" else nn.CrossEntropyLoss())
    loader = DataLoader(crops, batch_size=batch, sampler=StreamSampler(batch), num_workers=num_workers)
    every = max(1, steps // evaluations)
    best, best_state, scores = -math.inf, None, {}
    step = 0
    for x, i in loader:
        encoder.train()
        for g in optimizer.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        y = targets[i].to(device)
        loss = loss_fn(head(encoder(x.to(device))), y.float() if task == "multilabel" else y.long())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if step % every == 0 or step == steps:
            scores[step] = valid_score(encoder, head, valid, chunk, device, task)
            if scores[step] >= best:
                best, best_state = scores[step], (step, copy.deepcopy(encoder.state_dict()))
        if step >= steps:
            break
    encoder.load_state_dict(best_state[1])
    return encoder.eval(), {"steps": steps, "batch": batch, "lr": lr, "chosen_step": best_state[0],
                            "valid": scores, "seconds": time.perf_counter() - t0}

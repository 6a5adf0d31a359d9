"""The linear probe's head, fitted and selected the way a reviewer accepts (HEAR / MARBLE style).

The encoder is frozen; what remains is a convex problem: L2-regularised logistic regression on
standardised embeddings (one sigmoid per tag for multi-label, a softmax for multi-class).

    x: (n_chunks, D) features, owner: (n_chunks,) track index  ->  per-track scores (n_tracks, K)

* `standardise`: mean and std from the training split only, applied to every split (an affine
  map, so the probe stays linear).
* `fit_logistic`: the exact optimum by full-batch L-BFGS in float64, so the result depends on
  the data and the L2 strength only: no learning rate, no epochs, no batch order. It minimises
  mean_i loss_i + l2/2 * ||W||^2 (bias not penalised; loss_i summed over tags), which is
  scikit-learn's LogisticRegression, per tag, with C = 1 / (l2 * n) (tests check they agree).
* `select_head`: the L2 strength is chosen on the validation split only (macro PR-AUC at track
  level; validation loss when no tag or class can be scored there, with a note). The test split
  is touched once, by the chosen head.
* `--mlp` (CLMR's 512-unit MLP head) is not convex: Adam with early stopping on the same criterion,
  and weight decay from the same grid.
"""
import copy
import math

import numpy as np
import torch
import torch.nn as nn
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score

L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def standardise(train_x, *others):
    """-> the splits mapped by the training split's mean and std (features with no spread: 1)."""
    mean, std = train_x.mean(0), train_x.std(0)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return [(x - mean) / std for x in (train_x, *others)]


def _loss_fn(task):
    """Mean over examples of the summed per-tag BCE (multi-label) or of the cross-entropy: so a
    given L2 strength means the same per tag as per class (each tag is its own logistic fit)."""
    if task == "multilabel":
        return lambda logits, y: nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum") / len(y)
    return nn.CrossEntropyLoss()


def _targets(y, task):
    y = torch.as_tensor(np.asarray(y))
    return y.double() if task == "multilabel" else y.long()


def fit_logistic(x, y, task, l2, n_out, max_iter=500):
    """L2-regularised logistic regression, solved to its optimum. x: (n, D), y: (n, K) 0/1 or
    (n,) class indices -> nn.Linear(D, n_out) in float64.

    Autograd is asked only for the gradient of the loss by the logits g (n, K); the weight's
    gradient g^T x is formed as x^T g with x^T stored contiguous (D, n): autograd's own product
    over the long n axis ran ~3x slower (2 Zen 4 cores, 30k x 128 features: 8.8 against 3.3 ms),
    and L-BFGS evaluates it ~300 times per head."""
    x, y = x.double(), _targets(y, task)
    xt = x.T.contiguous()                                          # (D, n)
    head = nn.Linear(x.shape[1], n_out).double()
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    loss_fn = _loss_fn(task)
    opt = torch.optim.LBFGS(head.parameters(), lr=1, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure():
        w, b = head.weight.detach(), head.bias.detach()
        logits = torch.addmm(b, x, w.T).requires_grad_()           # (n, K)
        loss = loss_fn(logits, y)
        g, = torch.autograd.grad(loss, logits)                     # (n, K)
        head.weight.grad = (xt @ g).T.contiguous() + l2 * w        # (K, D)
        head.bias.grad = g.sum(0)
        return loss.detach() + 0.5 * l2 * w.pow(2).sum()

    opt.step(closure)
    return head


def fit_mlp(x, y, task, l2, n_out, valid, seed=0, lr=1e-3, batch_size=256, max_epochs=200, patience=20):
    """CLMR's MLP head (D -> 512 -> K), Adam with weight decay l2, early-stopped on `valid`
    (a callable head -> criterion, higher is better)."""
    torch.manual_seed(seed)
    x, y = x.double(), _targets(y, task)
    head = nn.Sequential(nn.Linear(x.shape[1], 512), nn.ReLU(), nn.Linear(512, n_out)).double()
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=l2)
    loss_fn, g = _loss_fn(task), torch.Generator().manual_seed(seed)
    best, best_state, best_epoch = -math.inf, None, 0
    for epoch in range(max_epochs):
        head.train()
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            loss = loss_fn(head(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        head.eval()
        score = valid(head)
        if score > best:
            best, best_state, best_epoch = score, copy.deepcopy(head.state_dict()), epoch
        elif epoch - best_epoch >= patience:
            break
    head.load_state_dict(best_state)
    return head


def track_scores(head, x, owner, n_tracks, task):
    """Chunk probabilities averaged per track (CLMR's evaluation) -> (n_tracks, K) numpy."""
    with torch.no_grad():
        logits = head(x.double())
        probs = torch.sigmoid(logits) if task == "multilabel" else torch.softmax(logits, dim=1)
    summed = torch.zeros(n_tracks, probs.shape[1], dtype=probs.dtype).index_add_(0, owner, probs)
    return (summed / torch.bincount(owner, minlength=n_tracks)[:, None]).numpy()


def one_hot(y, k):
    out = np.zeros((len(y), k))
    out[np.arange(len(y)), y] = 1
    return out


def metrics(y, scores, names, task):
    """Track-level metrics. Multi-label: macro ROC-AUC and PR-AUC over the tags that have both a
    positive and a negative here (the rest listed). Multi-class: accuracy and macro F1, plus the
    same one-vs-rest ROC-AUC / PR-AUC, so every task has comparable columns."""
    out = {}
    if task == "multiclass":
        pred = scores.argmax(1)
        out = {"accuracy": float(accuracy_score(y, pred)),
               "macro_f1": float(f1_score(y, pred, average="macro", labels=np.unique(y), zero_division=0))}
        y = one_hot(y, len(names))
    ok = [bool(y[:, k].min() == 0 and y[:, k].max() == 1) for k in range(y.shape[1])]
    per_tag = {names[k]: {"roc_auc": float(roc_auc_score(y[:, k], scores[:, k])),
                          "pr_auc": float(average_precision_score(y[:, k], scores[:, k]))}
               for k in range(len(names)) if ok[k]}
    nan = float("nan")
    out.update({"roc_auc": float(np.mean([v["roc_auc"] for v in per_tag.values()])) if per_tag else nan,
                "pr_auc": float(np.mean([v["pr_auc"] for v in per_tag.values()])) if per_tag else nan,
                "tags_scored": len(per_tag), "tags_left_out": [n for n, k in zip(names, ok) if not k]})
    return out, per_tag


def chunk_loss(head, x, y, task):
    with torch.no_grad():
        return float(_loss_fn(task)(head(x.double()), _targets(y, task)))


def select_head(train, valid, names, task, mlp=False, grid=L2_GRID, seed=0):
    """train/valid: (x standardised (n, D), owner (n,), track targets). Fits one head per L2
    strength, keeps the best on validation. -> (head, {"l2", "criterion", "valid_score", "grid"})."""
    (xtr, otr, ytr), (xv, ov, yv) = train, valid
    n_out, n_valid = len(names), len(yv)
    chunk_ytr, chunk_yv = np.asarray(ytr)[otr.numpy()], np.asarray(yv)[ov.numpy()]
    scorable = metrics(yv, np.zeros((n_valid, n_out)), names, task)[0]["tags_scored"] > 0

    def criterion(head):
        if scorable:
            return metrics(yv, track_scores(head, xv, ov, n_valid, task), names, task)[0]["pr_auc"]
        return -chunk_loss(head, xv, chunk_yv, task)

    results = []
    for l2 in grid:
        if mlp:
            head = fit_mlp(xtr, chunk_ytr, task, l2, n_out, criterion, seed=seed)
        else:
            head = fit_logistic(xtr, chunk_ytr, task, l2, n_out)
        # Ties (common on a small validation split) are broken by the validation loss.
        results.append((criterion(head), -chunk_loss(head, xv, chunk_yv, task), l2, head))
    best = max(results, key=lambda r: (r[0], r[1]))
    info = {"l2": best[2], "criterion": "valid macro PR-AUC" if scorable else "valid loss (no tag or class "
            "has both a positive and a negative in the validation split)",
            "valid_score": best[0], "grid": {str(r[2]): r[0] for r in results}}
    return best[3], info

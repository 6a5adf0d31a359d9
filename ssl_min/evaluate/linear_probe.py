"""The linear probe's head, fitted and selected the way a reviewer accepts (HEAR / MARBLE style).

The encoder is frozen; what remains is a convex problem: L2-regularised logistic regression on
standardised embeddings (one sigmoid per tag for multi-label, a softmax for multi-class).

    x: (n_chunks, D) features, owner: (n_chunks,) track index  ->  per-track scores (n_tracks, K)

* `standardise`: mean and std from the training split only, applied to every split (an affine
  map, so the probe stays linear).
* `fit_logistic`: the optimum by full-batch L-BFGS in float64, so the result depends on the data
  and the L2 strength only: no learning rate, no epochs, no batch order. It minimises
  mean_i loss_i + l2/2 * ||W||^2 (bias not penalised; loss_i summed over tags), which is
  scikit-learn's LogisticRegression, per tag, with C = 1 / (l2 * n) (tests check they agree).
  Preconditioned and warm-started along the L2 path, it reaches the optimum in tens of iterations
  at the strengths that get chosen; at the weakest ones, on features a linear head nearly
  separates, it can stop at MAX_ITER short of it (bench/probe_solver.py: how far, against Newton).
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
MAX_ITER = 300           # L-BFGS iterations per L2 strength, each warm-started from the stronger one


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


def data_basis(x):
    """x (n, D) -> (eigenvalues (D,), eigenvectors (D, D)) of x^T x / n: the loss's curvature at
    w = 0 up to a constant, shared by every L2 strength of one feature set."""
    x = x.double()
    return torch.linalg.eigh(x.T @ x / len(x))


def fit_logistic(x, y, task, l2, n_out, start=None, basis=None, max_iter=MAX_ITER):
    """L2-regularised logistic regression by full-batch L-BFGS in float64. x: (n, D) standardised,
    y: (n, K) 0/1 or (n,) class indices -> (nn.Linear(D, n_out) in float64, the final gradient's
    largest entry). start: an nn.Linear to begin from (the previous L2 strength's head).

    Preconditioned: L-BFGS runs on z with w = z diag(s) V^T, where V, lam = data_basis(x) and
    s = (c lam + l2)^(-1/2), c the loss's curvature at w = 0 (1/4 for a sigmoid, (1 - 1/K)/K for a
    softmax). The problem and its optimum are unchanged (a fixed linear change of variables); its
    Hessian at w = 0 becomes the identity, where the correlated features made it ill-conditioned.
    It stops when a step no longer changes the loss in float64 (by 1e-12) or after max_iter
    iterations; the last gradient's largest entry (in z) is returned, so a fit stopped short shows.

    Autograd is asked only for the gradient of the loss by the logits g (n, K); the weight's
    gradient is formed as xz^T g with xz^T stored contiguous: autograd's own product over the long
    n axis ran ~3x slower (2 Zen 4 cores, 30k x 128 features)."""
    x, y = x.double(), _targets(y, task)
    lam, vec = basis if basis is not None else data_basis(x)
    curvature = 0.25 if task == "multilabel" else (1 - 1 / n_out) / n_out
    s = (curvature * lam.clamp_min(0) + l2).rsqrt()                 # (D,)
    to_w = vec * s                                                  # w = z @ to_w.T
    xz = x @ to_w                                                   # (n, D): the features seen by z
    xzt, s2 = xz.T.contiguous(), s * s                              # ||w||^2 = sum(s^2 z^2)
    z = torch.zeros(n_out, x.shape[1], dtype=torch.float64)
    b = torch.zeros(n_out, dtype=torch.float64)
    if start is not None:
        z, b = (start.weight.detach().double() @ vec) / s, start.bias.detach().double().clone()
    z.requires_grad_()
    b.requires_grad_()
    loss_fn = _loss_fn(task)
    opt = torch.optim.LBFGS([z, b], lr=1, max_iter=max_iter, history_size=20, tolerance_grad=1e-9,
                            tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure():
        zd, bd = z.detach(), b.detach()
        logits = torch.addmm(bd, xz, zd.T).requires_grad_()          # (n, K)
        loss = loss_fn(logits, y)
        g, = torch.autograd.grad(loss, logits)                      # (n, K)
        z.grad = ((xzt @ g).T + l2 * s2 * zd).contiguous()          # (K, D)
        b.grad = g.sum(0)
        return loss.detach() + 0.5 * l2 * (s2 * zd.pow(2)).sum()

    opt.step(closure)
    closure()
    head = nn.Linear(x.shape[1], n_out).double()
    with torch.no_grad():
        head.weight.copy_(z.detach() @ to_w.T)
        head.bias.copy_(b.detach())
    return head, float(torch.cat([z.grad.flatten(), b.grad]).abs().max())


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
    strength, keeps the best on validation.
    -> (head, {"l2", "criterion", "valid_score", "grid", and for the linear head "gradient"})."""
    (xtr, otr, ytr), (xv, ov, yv) = train, valid
    n_out, n_valid = len(names), len(yv)
    chunk_ytr, chunk_yv = np.asarray(ytr)[otr.numpy()], np.asarray(yv)[ov.numpy()]
    scorable = metrics(yv, np.zeros((n_valid, n_out)), names, task)[0]["tags_scored"] > 0

    def criterion(head):
        if scorable:
            return metrics(yv, track_scores(head, xv, ov, n_valid, task), names, task)[0]["pr_auc"]
        return -chunk_loss(head, xv, chunk_yv, task)

    results, basis, previous = [], None if mlp else data_basis(xtr), None
    for l2 in sorted(grid, reverse=True):       # strong to weak: each fit starts at the last optimum
        if mlp:
            head, gradient = fit_mlp(xtr, chunk_ytr, task, l2, n_out, criterion, seed=seed), None
        else:
            head, gradient = fit_logistic(xtr, chunk_ytr, task, l2, n_out, start=previous, basis=basis)
            previous = head
        # Ties (common on a small validation split) are broken by the validation loss.
        results.append((criterion(head), -chunk_loss(head, xv, chunk_yv, task), l2, head, gradient))
    results.sort(key=lambda r: r[2])
    best = max(results, key=lambda r: (r[0], r[1]))
    info = {"l2": best[2], "criterion": "valid macro PR-AUC" if scorable else "valid loss (no tag or class "
            "has both a positive and a negative in the validation split)",
            "valid_score": best[0], "grid": {str(r[2]): r[0] for r in results}}
    if not mlp:
        info["gradient"] = {str(r[2]): r[4] for r in results}       # each fit's last gradient: fit_logistic
    return best[3], info

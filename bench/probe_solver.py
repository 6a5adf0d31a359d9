"""The probe's head solver against the exact optimum: the same choices, the same metrics, how fast.

    python bench/probe_solver.py --checkpoint runs/demo/checkpoint.pt --data data/demo --data data/demo/style

For every row of the main job's report (pretrained and random init, each read as its output and as
its blocks; MFCC) the features are taken as probe.py takes them (its cache), standardised, and the
head is selected twice over the same L2 grid on the same validation split:
  ours    select_head: preconditioned L-BFGS, warm-started from the stronger L2 strength, stopped
          when the loss no longer changes or at MAX_ITER iterations (ssl_min/evaluate/linear_probe.py)
  exact   scikit-learn's LogisticRegression, solver newton-cholesky (Newton's method with the exact
          Hessian), tol 1e-10: one per tag (multi-label) or one multinomial (multi-class), with
          C = 1 / (l2 * n), the same objective
Printed per row: seconds for each, the L2 each chooses, the largest difference of the validation
scores over the grid, and of the chosen heads' test metrics. The test split is read only to print
how far the two chosen heads are apart there (a comparison of solvers, not a choice).
"""
import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import ssl_min.evaluate.linear_probe as lp  # noqa: E402
from bench.machine import cpu_name  # noqa: E402
from probe import frozen_features, load_sets, row_extractors  # noqa: E402
from ssl_min.evaluate.blocks import BlockStats  # noqa: E402
from ssl_min.models.load import load_encoder  # noqa: E402


def exact_head(x, y, task, l2, n_out):
    """The optimum by Newton's method (scikit-learn) -> nn.Linear(D, n_out) in float64."""
    x, y = x.double().numpy(), np.asarray(y)
    c = 1 / (l2 * len(x))
    head = nn.Linear(x.shape[1], n_out).double()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)              # short of the optimum: loud
        if task == "multilabel":
            fits = [LogisticRegression(C=c, solver="newton-cholesky", tol=1e-10, max_iter=1000).fit(x, y[:, k])
                    for k in range(n_out)]
            w, b = np.concatenate([f.coef_ for f in fits]), np.concatenate([f.intercept_ for f in fits])
        else:
            fit = LogisticRegression(C=c, solver="newton-cholesky", tol=1e-10, max_iter=1000).fit(x, y)
            w, b = fit.coef_, fit.intercept_
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(w))
        head.bias.copy_(torch.from_numpy(b))
    return head


def exact_select(train, valid, names, task):
    """select_head's rule (valid macro PR-AUC, ties by valid loss) over exact heads."""
    (xtr, otr, ytr), (xv, ov, yv) = train, valid
    chunk_ytr, chunk_yv = np.asarray(ytr)[otr.numpy()], np.asarray(yv)[ov.numpy()]
    results = []
    for l2 in lp.L2_GRID:
        head = exact_head(xtr, chunk_ytr, task, l2, len(names))
        score = lp.metrics(yv, lp.track_scores(head, xv, ov, len(yv), task), names, task)[0]["pr_auc"]
        results.append((score, -lp.chunk_loss(head, xv, chunk_yv, task), l2, head))
    best = max(results, key=lambda r: (r[0], r[1]))
    return best[3], {"l2": best[2], "grid": {str(r[2]): r[0] for r in results}}


def compare(features, sets):
    """features: {split: (x, owner)} -> one row of the table (a dict)."""
    (xtr, otr), (xv, ov), (xt, ot) = features["train"], features["valid"], features["test"]
    xtr, xv, xt = lp.standardise(xtr, xv, xt)
    names, task = sets["train"].names, sets["train"].task
    train, valid = (xtr, otr, sets["train"].targets), (xv, ov, sets["valid"].targets)
    t = time.perf_counter()
    ours, ours_info = lp.select_head(train, valid, names, task)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    exact, exact_info = exact_select(train, valid, names, task)
    t_exact = time.perf_counter() - t
    test = [lp.metrics(sets["test"].targets, lp.track_scores(h, xt, ot, len(sets["test"].tracks), task),
                       names, task)[0] for h in (ours, exact)]
    keys = [k for k in ("accuracy", "macro_f1", "roc_auc", "pr_auc") if k in test[0]]
    return {"dim": xtr.shape[1], "ours_s": t_ours, "exact_s": t_exact, "l2": (ours_info["l2"], exact_info["l2"]),
            "valid": max(abs(ours_info["grid"][k] - exact_info["grid"][k]) for k in ours_info["grid"]),
            "test": max(abs(test[0][k] - test[1][k]) for k in keys), "pr_auc": (test[0]["pr_auc"], test[1]["pr_auc"]),
            "gradient": ours_info["gradient"][str(ours_info["l2"])]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="runs/demo/checkpoint.pt")
    ap.add_argument("--data", action="append", help="labeled data (repeatable; default data/demo and data/demo/style)")
    args = ap.parse_args()
    torch.manual_seed(0)
    encoder, info = load_encoder(args.checkpoint, conv="fast")
    chunk, device = info["chunk_samples"], torch.device("cpu")
    columns = BlockStats(encoder).output_columns(chunk)
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} threads; {args.checkpoint}; "
          f"ours: MAX_ITER {lp.MAX_ITER}")
    for data in args.data or ["data/demo", "data/demo/style"]:
        sets, _ = load_sets(argparse.Namespace(data=data, mtt_split=None), info["sample_rate"])
        rows = ["pretrained", "random_init", "mfcc"]
        extractors, keys = row_extractors(rows, encoder, info, sets["train"].tracks, chunk, device, "blocks")
        feats = frozen_features(extractors, keys, sets, chunk, device, Path(args.checkpoint).parent / "embeddings",
                                num_workers=1)
        print(f"\n{data} ({sets['train'].task}, {len(sets['train'].names)} outputs)")
        print(f"{'row':<24}{'dim':>5}{'ours s':>8}{'exact s':>9}{'L2 ours/exact':>16}{'max|dvalid|':>13}"
              f"{'max|dtest|':>12}{'test PR-AUC ours/exact':>25}{'grad':>9}")
        total = [0.0, 0.0]
        for name in rows:
            readouts = {"mfcc": feats[name]} if name == "mfcc" else {
                "output": {s: (x[:, columns], o) for s, (x, o) in feats[name].items()}, "blocks": feats[name]}
            for reading, f in readouts.items():
                r = compare(f, sets)
                total[0] += r["ours_s"]
                total[1] += r["exact_s"]
                label = name if name == "mfcc" else f"{name} ({reading})"
                print(f"{label:<24}{r['dim']:>5}{r['ours_s']:>8.1f}{r['exact_s']:>9.1f}"
                      f"{r['l2'][0]:>9.0e}/{r['l2'][1]:.0e}{r['valid']:>13.1e}{r['test']:>12.1e}"
                      f"{r['pr_auc'][0]:>15.4f}/{r['pr_auc'][1]:.4f}{r['gradient']:>9.0e}", flush=True)
        print(f"{'all rows':<24}{'':>5}{total[0]:>8.1f}{total[1]:>9.1f}")


if __name__ == "__main__":
    main()

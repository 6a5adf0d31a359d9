"""Exported embeddings are the probe's embeddings: scikit-learn on `ssl_min.embed` output lands
where probe.py lands.

    python bench/embed_vs_probe.py --checkpoint runs/demo/checkpoint.pt --data data/demo

Exports the track embeddings of every split of a tutorial-layout labeled set (DIR/<split>/...),
fits one scikit-learn logistic regression per tag on the standardised training embeddings (C chosen
on the validation split), and prints the test macro PR-AUC next to probe.py's pretrained figure
(from probe_<checkpoint>.json). The two differ in one way only: probe.py trains on chunk
embeddings and averages chunk predictions per track; here each track is one mean embedding.
"""
import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ssl_min.embed import export  # noqa: E402
from ssl_min.data.labeled import load_labeled  # noqa: E402
from ssl_min.models.load import load_encoder  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True, help="tutorial layout with train/valid/test (e.g. data/demo)")
    args = ap.parse_args()
    rate = load_encoder(args.checkpoint)[1]["sample_rate"]
    sets = load_labeled(args.data, rate)
    out = Path(tempfile.mkdtemp(prefix="ssl_min_embed_"))
    x = {}
    for split, ls in sets.items():
        folder = Path(args.data) / split
        export(args.checkpoint, folder, out / split, num_workers=2)
        x[split] = np.stack([np.load(out / split / (str(Path(t.path).relative_to(folder)) + ".npy")) for t in ls.tracks])
    mean, std = x["train"].mean(0), x["train"].std(0) + 1e-8
    x = {s: (v - mean) / std for s, v in x.items()}
    y = {s: ls.targets for s, ls in sets.items()}
    scores = []
    for k in range(y["train"].shape[1]):
        if not (0 < y["train"][:, k].sum() < len(y["train"])) or y["test"][:, k].min() == y["test"][:, k].max():
            continue
        best = max((average_precision_score(y["valid"][:, k], LogisticRegression(C=c, max_iter=5000)
                    .fit(x["train"], y["train"][:, k]).decision_function(x["valid"])), c)
                   for c in (1e-3, 1e-2, 1e-1, 1, 10))
        clf = LogisticRegression(C=best[1], max_iter=5000).fit(x["train"], y["train"][:, k])
        scores.append(average_precision_score(y["test"][:, k], clf.decision_function(x["test"])))
    report = Path(args.checkpoint).parent / f"probe_{Path(args.checkpoint).stem}.json"
    probe = json.loads(report.read_text())["results"]["pretrained"]["pr_auc"] if report.exists() else float("nan")
    print(f"\ntest macro PR-AUC over {len(scores)} tags: scikit-learn on exported track embeddings "
          f"{np.mean(scores):.3f}; probe.py (pretrained) {probe:.3f}; difference {np.mean(scores) - probe:+.3f}")


if __name__ == "__main__":
    main()

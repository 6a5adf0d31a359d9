"""Linear probe: how good is the frozen encoder's representation? (CLMR's / MoCo's protocol)

    python probe.py --checkpoint runs/demo/checkpoint.pt --data data/demo              # make probe
    python probe.py --checkpoint runs/demo/checkpoint.pt --data data/demo/style --out runs/demo/probe_style.json
    python probe.py --checkpoint runs/clmr/best.pt --data ~/mtt --mtt_split ~/mtt_split --mlp

1. Embed every non-overlapping chunk of every labeled track with the frozen encoder (eval mode,
   no gradients; the projector is dropped). Embeddings are cached per (weights, data, chunking).
2. Train only a linear head (or CLMR's 512-unit MLP with --mlp) on chunk embeddings, early-stopped
   on the validation split (carved from train, by track, when the data has none).
3. Test at track level: predictions averaged over each track's chunks; macro ROC-AUC and PR-AUC
   (multi-label) or accuracy and macro F1 (multi-class).
The same run probes a randomly initialised encoder of the same architecture: the baseline that
shows what pretraining bought. Results: a table on stdout and probe.json next to the checkpoint.
"""
import argparse
import copy
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score

from ssl_min.data import load_labeled, split_by_track, track_chunks
from ssl_min.model import build_model

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--checkpoint", required=True, help="a train.py checkpoint (checkpoint.pt or best.pt)")
parser.add_argument("--data", required=True, help="labeled data: tutorial layout, MagnaTagATune, class folders or a label CSV")
parser.add_argument("--task", choices=["auto", "multilabel", "multiclass"], default="auto",
                    help="auto: multi-class if the annotations have a `label` column or class folders")
parser.add_argument("--mtt_split", default=None, help="MagnaTagATune only: folder with train/valid/test .npy split files")
parser.add_argument("--mlp", action="store_true", help="CLMR's MLP head (512 hidden units) instead of a linear one")
parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the head")
parser.add_argument("--weight_decay", type=float, default=0.0, help="Adam weight decay of the head")
parser.add_argument("--batch_size", type=int, default=256, help="chunk embeddings per head step")
parser.add_argument("--max_epochs", type=int, default=200, help="upper bound on head epochs")
parser.add_argument("--patience", type=int, default=20, help="epochs without validation gain before stopping")
parser.add_argument("--no_random_baseline", action="store_true", help="skip probing the random-init encoder")
parser.add_argument("--seed", type=int, default=0, help="random-init weights, head init and batch order")
parser.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
parser.add_argument("--out", default=None, help="result file (default: probe.json next to the checkpoint)")


def embed(encoder, labeled, chunk, device, batch=64):
    """All chunks of all tracks -> (n_chunks, D) float32 and (n_chunks,) track index."""
    feats, owner = [], []
    with torch.no_grad():
        for i, track in enumerate(labeled.tracks):
            x = track_chunks(track, chunk)                                 # (n, 1, chunk)
            for j in range(0, len(x), batch):
                feats.append(encoder(x[j:j + batch].to(device)).float().cpu())
            owner += [i] * len(x)
    return torch.cat(feats), torch.tensor(owner)


def cached_embeddings(encoder, sets, cfg, device, cache_dir, key):
    """embed() for every split, cached under cache_dir by a hash of key + the tracks."""
    ident = json.dumps([key, cfg["sample_rate"], cfg["chunk_samples"],
                        {s: [t.path for t in ls.tracks] for s, ls in sets.items()}])
    path = Path(cache_dir) / f"{hashlib.sha1(ident.encode()).hexdigest()[:16]}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    out = {s: embed(encoder, ls, cfg["chunk_samples"], device) for s, ls in sets.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, f"{path}.tmp")
    os.replace(f"{path}.tmp", path)
    return out


def track_scores(head, feats, owner, n_tracks, task):
    """Track-level predictions: chunk probabilities averaged per track -> (n_tracks, n_out)."""
    with torch.no_grad():
        logits = head(feats)
        probs = torch.sigmoid(logits) if task == "multilabel" else torch.softmax(logits, dim=1)
    summed = torch.zeros(n_tracks, probs.shape[1]).index_add_(0, owner, probs)
    return (summed / torch.bincount(owner, minlength=n_tracks)[:, None]).numpy()


def metrics(y, scores, names, task):
    if task == "multiclass":
        pred = scores.argmax(1)
        return {"accuracy": accuracy_score(y, pred), "macro_f1": f1_score(y, pred, average="macro")}, {}
    # A tag with no positive (or no negative) in this split has no ROC/PR curve: left out, listed.
    ok = [(y[:, k].min() == 0) and (y[:, k].max() == 1) for k in range(y.shape[1])]
    keep = np.nonzero(ok)[0]
    per_tag = {names[k]: {"roc_auc": roc_auc_score(y[:, k], scores[:, k]),
                          "pr_auc": average_precision_score(y[:, k], scores[:, k])} for k in keep}
    return {"roc_auc": float(np.mean([v["roc_auc"] for v in per_tag.values()])),
            "pr_auc": float(np.mean([v["pr_auc"] for v in per_tag.values()])),
            "tags_scored": len(keep), "tags_left_out": [names[k] for k in range(len(names)) if not ok[k]]}, per_tag


def probe(encoder, sets, cfg, args, device, cache_key, cache_dir):
    """Freeze `encoder`, train a head on its embeddings, return the test metrics."""
    encoder.eval()                                  # BatchNorm statistics must not move
    encoder.requires_grad_(False)
    before = copy.deepcopy(encoder.state_dict())
    emb = cached_embeddings(encoder, sets, cfg, device, cache_dir, cache_key)
    task, names = sets["train"].task, sets["train"].names
    n_out = len(names)
    (xtr, otr) = emb["train"]
    mean, std = xtr.mean(0), xtr.std(0) + 1e-6      # standardising is an affine map: still linear
    norm = {s: ((x - mean) / std, o) for s, (x, o) in emb.items()}
    ytr = torch.as_tensor(sets["train"].targets)[otr]
    ytr = ytr.float() if task == "multilabel" else ytr.long()

    torch.manual_seed(args.seed)
    dim = xtr.shape[1]
    head = nn.Sequential(nn.Linear(dim, 512), nn.ReLU(), nn.Linear(512, n_out)) if args.mlp else nn.Linear(dim, n_out)
    trainable = [n for n, p in list(encoder.named_parameters()) + list(head.named_parameters()) if p.requires_grad]
    assert trainable == [n for n, _ in head.named_parameters()], f"only the head may train, got {trainable}"
    if not args.mlp:
        assert trainable == ["weight", "bias"]
    optimizer = torch.optim.Adam(head.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss() if task == "multilabel" else nn.CrossEntropyLoss()
    key = "pr_auc" if task == "multilabel" else "accuracy"
    xv, ov = norm["valid"]
    best, best_state, best_epoch, g = -1.0, None, 0, torch.Generator().manual_seed(args.seed)
    for epoch in range(args.max_epochs):
        head.train()
        perm = torch.randperm(len(ytr), generator=g)
        for i in range(0, len(perm), args.batch_size):
            idx = perm[i:i + args.batch_size]
            loss = loss_fn(head(norm["train"][0][idx]), ytr[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        head.eval()
        score = metrics(sets["valid"].targets, track_scores(head, xv, ov, len(sets["valid"].tracks), task), names, task)[0][key]
        if score > best:
            best, best_state, best_epoch = score, copy.deepcopy(head.state_dict()), epoch
        elif epoch - best_epoch >= args.patience:
            break
    head.load_state_dict(best_state)
    for k, v in encoder.state_dict().items():       # proof that the encoder stayed frozen
        assert torch.equal(v, before[k]), f"encoder tensor {k} changed during the probe"
    xt, ot = norm["test"]
    test, per_tag = metrics(sets["test"].targets, track_scores(head, xt, ot, len(sets["test"].tracks), task), names, task)
    return {**test, f"valid_{key}": best, "head_epochs": best_epoch + 1, "per_tag": per_tag}


def main():
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    cfg = ckpt["config"]
    arch = (cfg["n_blocks"], cfg["width"], cfg["pool"], cfg["proj_hidden"], cfg["proj_dim"])
    model = build_model(*arch)
    model.load_state_dict(ckpt["model"])            # strict
    encoder = model.encoder.to(device)              # the projector is dropped

    sets = load_labeled(args.data, cfg["sample_rate"], args.mtt_split)
    notes = []
    if "valid" not in sets:
        carved = split_by_track(sets["train"], (0.9, 0.1))
        sets["train"], sets["valid"] = carved["train"], carved["valid"]
        notes.append(f"no validation split: carved {len(sets['valid'].tracks)} tracks from train, by track")
        print(notes[-1])
    task = sets["train"].task
    if args.task != "auto" and args.task != task:
        raise SystemExit(f"--task {args.task}, but {args.data} is {task}")
    sizes = {s: len(ls.tracks) for s, ls in sets.items()}
    print(f"{task} probe, {len(sets['train'].names)} {'tags' if task == 'multilabel' else 'classes'}; tracks: {sizes}")

    cache_dir = Path(args.checkpoint).parent / "embeddings"
    weights_id = hashlib.sha1(b"".join(v.cpu().numpy().tobytes() for v in encoder.state_dict().values())).hexdigest()
    results = {"pretrained": probe(encoder, sets, cfg, args, device, weights_id, cache_dir)}
    if not args.no_random_baseline:
        torch.manual_seed(args.seed)
        random_encoder = build_model(*arch).encoder.to(device)
        results["random_init"] = probe(random_encoder, sets, cfg, args, device, f"random:{args.seed}:{arch}", cache_dir)

    cols = ["roc_auc", "pr_auc"] if task == "multilabel" else ["accuracy", "macro_f1"]
    print(f"\n{'encoder':<12}" + "".join(f"{c:>10}" for c in cols) + f"{'head ep.':>10}")
    for name, r in results.items():
        print(f"{name:<12}" + "".join(f"{r[c]:>10.4f}" for c in cols) + f"{r['head_epochs']:>10d}")
    left = results["pretrained"].get("tags_left_out")
    if left:
        print(f"left out of the macro average (no positive or no negative in test): {left}")
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "probe.json"
    report = {"checkpoint": str(args.checkpoint), "data": str(args.data), "task": task,
              "names": sets["train"].names, "tracks": sizes, "notes": notes,
              "config": {**vars(args), "train_config": cfg}, "results": results}
    out.write_text(json.dumps(report, indent=1, default=float))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

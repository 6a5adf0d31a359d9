"""Linear probe: how good is the frozen encoder's representation? (CLMR's / MoCo's protocol)

    python probe.py --checkpoint runs/demo/checkpoint.pt --data data/demo              # make probe
    python probe.py --checkpoint runs/demo/checkpoint.pt --data data/demo/style
    python probe.py --checkpoint runs/clmr/best.pt --data ~/mtt --mtt_split ~/mtt_split --mlp

Three rows, one protocol:
  pretrained   the checkpoint's encoder (eval mode, no gradients; the projector is dropped), read
               two ways: its output (CLMR's protocol), or the mean and std over time of every
               block (ssl_min/evaluate/blocks.py); --features auto (the default) probes both and
               keeps, per row, the one that scores higher on the validation split, and says which
  random_init  the same architecture, random weights, BatchNorm statistics re-estimated on the
               training audio (so it is not probed with statistics of mean 0, variance 1)
  mfcc         40 MFCCs + deltas, mean and std over each chunk: the hand-crafted baseline
  supervised   (--rows ...,supervised) the ceiling: the same architecture trained end to end on the
               train split's labels for the pretraining run's steps and batch, its best point on
               validation, then frozen and probed like the others (ssl_min/evaluate/supervised.py);
               the report says what share of the random_init -> supervised gap the pretrained row closes
1. Every non-overlapping chunk of every labeled track goes through the three extractors
   (each track decoded once; features cached next to the checkpoint).
2. Features are standardised with the training split's statistics; an L2-regularised logistic
   regression (solved to its optimum: ssl_min/evaluate/linear_probe.py) is fitted for each L2 strength in a grid, and the validation split
   (carved from train, stratified, when the data has none) picks one. The test split is used once.
3. Test at track level: chunk predictions averaged per track; macro ROC-AUC and PR-AUC, plus
   accuracy and macro F1 for multi-class (one-hot tag columns are read as classes).
Results: a table on stdout, probe_<checkpoint name>.json next to the checkpoint, and beside it a
picture of every tag's (or class's) PR-AUC per row (.png).
"""
import argparse
import copy
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ssl_min.data.labeled import TooSmall, carve_validation, check_sizes, load_labeled
from ssl_min.evaluate.blocks import BlockStats, readout
from ssl_min.evaluate.extract import cached_extract, recalibrate_batchnorm
from ssl_min.evaluate.linear_probe import metrics, select_head, standardise, track_scores
from ssl_min.evaluate.mfcc import MFCCStats
from ssl_min.evaluate.supervised import train_supervised
from ssl_min.models import build_encoder
from ssl_min.models.load import DamagedFile, load_encoder, load_tensors, pick_device, weights_id
from ssl_min.runtime.atomic import save_atomic, write_text_atomic
from ssl_min.runtime.cpu_memory import keep_freed_memory
from ssl_min.runtime.formulation import resolve_conv
from ssl_min.visual.bars import plot_probe

HEADROOM = 0.05          # a random_init -> supervised gap below this (PR-AUC) cannot show a learner's worth
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--checkpoint", required=True, help="a train.py checkpoint (checkpoint.pt or best.pt), or CLMR's")
parser.add_argument("--data", required=True, help="labeled data: tutorial layout, MagnaTagATune, class folders or a label CSV")
parser.add_argument("--task", choices=["auto", "multilabel", "multiclass"], default="auto",
                    help="auto: multi-class for a `label` column, class folders or one-hot tag columns")
parser.add_argument("--mtt_split", default=None, help="MagnaTagATune only: folder with train/valid/test .npy split files")
parser.add_argument("--mlp", action="store_true", help="CLMR's MLP head (512 hidden units, Adam, early stopping) "
                    "instead of the linear one; weight decay chosen from the same grid")
parser.add_argument("--features", choices=["auto", "output", "blocks"], default="auto",
                    help="what the encoder rows read: 'output', the representation (CLMR's protocol), "
                    "'blocks', the mean and std over time of every block's activations, concatenated "
                    "(a layer-wise readout: ssl_min/evaluate/blocks.py), or 'auto': both from one pass, "
                    "and per row the one with the higher validation score (the test split plays no part)")
parser.add_argument("--rows", default="pretrained,random_init,mfcc",
                    help="comma-separated rows of the report: pretrained, random_init, mfcc, supervised (the "
                    "ceiling: trains the architecture on the labels, as long as the pretraining run)")
parser.add_argument("--supervised_steps", type=int, default=0,
                    help="the supervised row's optimizer steps (0: the pretraining run's max_steps)")
parser.add_argument("--seed", type=int, default=0, help="random-init weights and the MLP head's init and batch order")
parser.add_argument("--num_workers", type=int, default=2, help="DataLoader workers decoding the labeled tracks")
parser.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
parser.add_argument("--conv", choices=["auto", "reference", "fast"], default="auto",
                    help="the encoders' formulation: CLMR's module stack, the fast CPU one (the same function), or "
                    "whichever a start-up timing finds faster here (CUDA: the reference)")
parser.add_argument("--out", default=None, help="result file (default: probe_<checkpoint name>.json next to the checkpoint)")


def readout_key(module, reading, conv):
    """The feature cache's key for an encoder read one way (output or blocks) in one formulation:
    its weights, the readout and the formulation (the formulations round differently)."""
    return weights_id(module) + (":blocks" if reading == "blocks" else "") + f":{conv}"


def row_extractors(rows, encoder, info, train_tracks, chunk, device, features="output", seed=0, notes=None):
    """The report's rows as extractors (B, 1, chunk) -> (B, D), each with a cache key naming its
    weights and readout -> (extractors, keys). The random-init encoder is built from `seed` and its
    BatchNorm statistics re-estimated on `train_tracks` (said in `notes`, a list, and printed)."""
    reading = "output" if features == "output" else "blocks"     # auto reads the output out of the blocks
    extractors, keys = {}, {}
    if "pretrained" in rows:
        extractors["pretrained"] = readout(encoder.to(device), reading)
        keys["pretrained"] = readout_key(encoder, reading, encoder.conv)
    if "random_init" in rows:
        torch.manual_seed(seed)
        random_encoder = build_encoder(*info["arch"], conv=encoder.conv, context=info.get("context")).to(device)
        n = recalibrate_batchnorm(random_encoder, train_tracks, chunk, device, seed=seed)
        note = f"random_init: BatchNorm statistics re-estimated on {n} training chunks"
        print(note)
        if notes is not None:
            notes.append(note)
        extractors["random_init"] = readout(random_encoder, reading)
        keys["random_init"] = readout_key(random_encoder, reading, encoder.conv)
    if "mfcc" in rows:
        rate = info["sample_rate"]
        extractors["mfcc"] = MFCCStats(rate).to(device)
        keys["mfcc"] = f"mfcc:{rate}:{extractors['mfcc'].n_mfcc}"
    return extractors, keys


def supervised_row(info, sets, chunk, device, args, conv, steps, cache_dir):
    """The ceiling row: a fresh encoder of the checkpoint's architecture trained on the train split's
    labels for `steps` and the pretraining run's batch and learning rate, at its best validation
    point; its weights cached in cache_dir under a key naming all of that and the data.
    -> (encoder in eval mode, {"steps", "batch", "lr", "chosen_step", "valid", "seconds"})."""
    cfg = info["train_config"] or {}
    batch, lr = cfg.get("batch_size", 48), cfg.get("lr", 3e-4)
    data = {s: [(t.path, t.length) for t in sets[s].tracks] + [np.asarray(sets[s].targets).tolist()]
            for s in ("train", "valid")}
    key = hashlib.sha1(json.dumps([info["arch"], info.get("context"), steps, batch, lr, args.seed, chunk, data],
                                  default=str).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"supervised_{key}.pt"
    torch.manual_seed(args.seed)
    encoder = build_encoder(*info["arch"], conv=conv, context=info.get("context"))
    try:
        saved = load_tensors(path, "supervised row's cache") if path.exists() else None
    except DamagedFile as e:                      # a cache entry: trained again, nothing is lost
        print(f"note: {e.code.split(';')[0]}; training it again")
        saved = None
    if saved is not None:
        encoder.load_state_dict(saved["encoder"])
        print(f"supervised: read back from {path}")
        return encoder.to(device).eval(), saved["info"]
    print(f"supervised: training the architecture on {len(sets['train'].tracks)} labeled tracks, {steps} steps "
          f"of {batch} (the pretraining run's budget), the best of 8 validation points kept")
    encoder, trained = train_supervised(encoder, sets["train"], sets["valid"], chunk, steps, batch, lr, device,
                                        seed=args.seed, num_workers=args.num_workers)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    save_atomic({"encoder": encoder.state_dict(), "info": trained}, path)
    print(f"supervised: step {trained['chosen_step']} chosen on validation ({trained['seconds']:.0f} s)")
    return encoder, trained


def headroom(results):
    """The random_init -> supervised gap (test macro PR-AUC) and the share the pretrained row closes."""
    if not {"random_init", "supervised"} <= set(results):
        return None
    gap = results["supervised"]["pr_auc"] - results["random_init"]["pr_auc"]
    out = {"gap": gap, "enough": gap >= HEADROOM}
    if "pretrained" in results and gap > 0:
        out["closed"] = (results["pretrained"]["pr_auc"] - results["random_init"]["pr_auc"]) / gap
    return out


def frozen_features(extractors, keys, sets, chunk, device, cache_dir, num_workers=0):
    """cached_extract() with the proof that no extractor changed: gradients off, eval mode, and
    every tensor of every state dict (BatchNorm statistics included) equal before and after."""
    frozen = {name: copy.deepcopy(m.state_dict()) for name, m in extractors.items()}
    for m in extractors.values():
        m.requires_grad_(False)
    features = cached_extract(extractors, keys, sets, chunk, device, cache_dir, num_workers=num_workers)
    for name, m in extractors.items():
        for k, v in m.state_dict().items():
            assert torch.equal(v, frozen[name][k]), f"{name}: tensor {k} changed during the probe"
        assert not any(p.requires_grad for p in m.parameters()), f"{name}: a parameter requires grad"
    return features


def fit_head(features, sets, args):
    """features: {split: (x (n, D), owner (n,))} -> (head, its selection info, the test features
    standardised): the head fitted on train, its L2 strength chosen on valid. No test label read."""
    (xtr, otr), (xv, ov), (xt, _) = features["train"], features["valid"], features["test"]
    xtr, xv, xt = standardise(xtr, xv, xt)
    head, chosen = select_head((xtr, otr, sets["train"].targets), (xv, ov, sets["valid"].targets),
                               sets["train"].names, sets["train"].task, mlp=args.mlp, seed=args.seed)
    return head, chosen, xt


def score_on_test(head, chosen, xt, owner, sets):
    """The one use of the test split: the chosen head's metrics at track level."""
    task, names = sets["train"].task, sets["train"].names
    test, per_tag = metrics(sets["test"].targets, track_scores(head, xt, owner, len(sets["test"].tracks), task),
                            names, task)
    return {**test, "head": chosen, "per_tag": per_tag}


def probe_features(features, sets, args):
    """features: {split: (x (n, D), owner (n,))} -> test metrics of the head chosen on valid."""
    return score_on_test(*fit_head(features, sets, args), features["test"][1], sets)


def choose_readout(features, output_columns, sets, args):
    """--features auto for one encoder row. features: {split: (block features (n, D), owner)};
    the encoder's output is their `output_columns`. Both readouts get a head chosen on valid; the
    one whose head scores higher there is kept (a tie keeps the output) and only its head meets
    the test split, reported with {"readout": {"chosen", "valid": {readout: score}}}."""
    candidates = {"output": {s: (x[:, output_columns], o) for s, (x, o) in features.items()}, "blocks": features}
    fitted = {name: fit_head(feats, sets, args) for name, feats in candidates.items()}
    valid = {name: info["valid_score"] for name, (_, info, _) in fitted.items()}
    chosen = "blocks" if valid["blocks"] > valid["output"] else "output"
    result = score_on_test(*fitted[chosen], features["test"][1], sets)
    return {**result, "readout": {"chosen": chosen, "valid": valid}}


def load_sets(args, sample_rate):
    """Labeled splits, a stratified validation split carved when there is none, sizes checked."""
    sets = load_labeled(args.data, sample_rate, args.mtt_split)
    notes = []
    if "valid" not in sets:
        carved = carve_validation(sets["train"])
        sets = {**sets, **carved}
        notes.append(f"no validation split: carved {len(carved['valid'].tracks)} of "
                     f"{len(carved['train'].tracks) + len(carved['valid'].tracks)} training tracks, stratified")
    check_sizes(sets, args.data)
    return sets, notes


def main(argv=None):
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    if device.type == "cpu":
        keep_freed_memory()                                      # faster extraction: cpu_memory.py
    encoder, info = load_encoder(args.checkpoint)   # ours or CLMR's; strict; the projector is dropped
    rate, chunk = info["sample_rate"], info["chunk_samples"]
    encoder.conv, line = resolve_conv(args.conv, device, info["arch"], chunk)    # the formulation, measured
    print(line)

    try:
        sets, notes = load_sets(args, rate)
    except (TooSmall, ValueError, FileNotFoundError) as e:
        print(f"probe: {e}", file=sys.stderr)
        raise SystemExit(2)
    for n in notes:
        print(n)
    task = sets["train"].task
    if args.task != "auto" and args.task != task:
        raise SystemExit(f"--task {args.task}, but {args.data} is {task}")
    sizes = {s: len(ls.tracks) for s, ls in sets.items()}
    print(f"{task} probe, {len(sets['train'].names)} {'tags' if task == 'multilabel' else 'classes'}; tracks: {sizes}")

    # ---- the rows: extractors (B, 1, chunk) -> (B, D), each with a cache key naming its weights
    rows = [r for r in args.rows.split(",") if r]
    if unknown := set(rows) - {"pretrained", "random_init", "mfcc", "supervised"}:
        raise SystemExit(f"unknown rows {sorted(unknown)}")
    extractors, keys = row_extractors(rows, encoder, info, sets["train"].tracks, chunk, device, args.features,
                                      args.seed, notes)
    trained = None
    steps = args.supervised_steps or (info["train_config"] or {}).get("max_steps", 0)   # the pretraining's budget
    if "supervised" in rows and not steps:
        rows.remove("supervised")
        notes.append("supervised row skipped: the checkpoint names no budget (max_steps); give --supervised_steps")
        print(notes[-1])
    if "supervised" in rows:                    # the ceiling: the same architecture trained on the labels
        supervised, trained = supervised_row(info, sets, chunk, device, args, encoder.conv, steps,
                                             Path(args.checkpoint).parent / "embeddings")
        reading = "output" if args.features == "output" else "blocks"
        extractors["supervised"] = readout(supervised, reading)
        keys["supervised"] = readout_key(supervised, reading, encoder.conv)
    features = frozen_features(extractors, keys, sets, chunk, device, Path(args.checkpoint).parent / "embeddings",
                               num_workers=args.num_workers)
    if args.features == "auto":                 # encoder rows: the output or every block, chosen on valid
        columns = BlockStats(encoder).output_columns(chunk)
        results = {name: choose_readout(features[name], columns, sets, args) if name != "mfcc" else
                   probe_features(features[name], sets, args) for name in rows}
    else:
        results = {name: probe_features(features[name], sets, args) for name in rows}

    cols = (["accuracy", "macro_f1"] if task == "multiclass" else []) + ["roc_auc", "pr_auc"]
    print(f"\n{'encoder':<12}" + "".join(f"{c:>10}" for c in cols) + f"{'head L2':>10}{'valid':>8}  readout")
    for name, r in results.items():
        read = ("MFCC statistics" if name == "mfcc" else args.features if "readout" not in r else
                   f"{r['readout']['chosen']} (valid: " + ", ".join(f"{k} {v:.3f}" for k, v in r["readout"]["valid"].items()) + ")")
        print(f"{name:<12}" + "".join(f"{r[c]:>10.4f}" for c in cols)
              + f"{r['head']['l2']:>10.0e}{r['head']['valid_score']:>8.3f}  {read}")
    print(f"head chosen on: {results[rows[0]]['head']['criterion']}")
    room = headroom(results)
    if room is not None:
        share = f"; pretrained closes {100 * room['closed']:.0f} % of it" if "closed" in room else ""
        print(f"headroom: supervised - random_init = {room['gap']:+.4f} PR-AUC{share}"
              + ("" if room["enough"] else f" (under {HEADROOM}: this task cannot show a learner's worth)"))
    left = results[rows[0]].get("tags_left_out")
    if left:
        print(f"left out of the macro averages (no positive or no negative in test): {left}")
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / f"probe_{Path(args.checkpoint).stem}.json"
    report = {"checkpoint": str(args.checkpoint), "data": str(args.data), "task": task,
              "names": sets["train"].names, "tracks": sizes, "notes": notes,
              "encoder": info["source"], "config": {**vars(args), "train_config": info["train_config"]},
              "results": results, "headroom": room, "supervised": trained}
    write_text_atomic(out, json.dumps(report, indent=1, default=float))
    picture = plot_probe(report, out.with_suffix(".png"))                  # per-tag PR-AUC bars
    print(f"wrote {out} and {picture}")
    return report


if __name__ == "__main__":
    main()

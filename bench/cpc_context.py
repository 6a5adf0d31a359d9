"""Which CPC representation probes better on validation: the encoder's pooled frames, or the context?

    python bench/cpc_context.py --checkpoint runs/cpc/checkpoint.pt --data data/demo [--data data/demo/style]

For a `--objective cpc` checkpoint, three readouts of each chunk go through probe.py's protocol (the
head's L2 chosen on the validation split): the encoder's output (the mean of its frames z_t: what
probe.py, the exporter and ssl_min.hear read), the mean over time of the context c_t, and the last
c_t (the GRU's summary of the whole chunk). Only validation scores are printed: this is the choice
of what to ship, and a choice never reads the test split.
"""
import argparse
import sys
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.machine import cpu_name  # noqa: E402
from probe import fit_head, frozen_features, load_sets  # noqa: E402
from ssl_min.models.load import load_encoder, weights_id  # noqa: E402
from ssl_min.objectives.cpc import ContextPredictor  # noqa: E402


class Context(nn.Module):
    """x (B, 1, T) -> the context network's c_t, averaged over time ("mean") or the last ("last")."""

    def __init__(self, encoder, heads, how):
        super().__init__()
        self.encoder, self.heads, self.how = encoder, heads, how

    def forward(self, x):
        c, _ = self.heads(self.encoder.frames(x).transpose(1, 2))        # (B, T', H)
        return c.mean(1) if self.how == "mean" else c[:, -1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", action="append", required=True, help="labeled data (repeatable)")
    args = ap.parse_args()
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    cfg = ckpt["config"]
    if cfg["objective"] != "cpc":
        raise SystemExit(f"{args.checkpoint}: objective {cfg['objective']}, not cpc")
    encoder, info = load_encoder(args.checkpoint, conv="fast")
    heads = ContextPredictor(encoder.out_dim, cfg["cpc_context"], cfg["cpc_steps"])
    heads.load_state_dict({k[len("heads."):]: v for k, v in ckpt["objective"].items() if k.startswith("heads.")})
    heads.eval()
    extractors = {"encoder output": encoder, "context mean": Context(encoder, heads, "mean"),
                  "context last": Context(encoder, heads, "last")}
    keys = {name: f"{weights_id(m)}:{name}" for name, m in extractors.items()}
    print(f"CPU: {cpu_name()}; {args.checkpoint}")
    for data in args.data:
        probe_args = argparse.Namespace(data=data, mtt_split=None, mlp=False, seed=0)
        sets, _ = load_sets(probe_args, info["sample_rate"])
        feats = frozen_features(extractors, keys, sets, info["chunk_samples"], torch.device("cpu"),
                                Path(args.checkpoint).parent / "embeddings", num_workers=1)
        print(f"\n{data}: validation macro PR-AUC of the head chosen there")
        for name in extractors:
            _, chosen, _ = fit_head(feats[name], sets, probe_args)
            print(f"  {name:<15} {chosen['valid_score']:.3f}  (dim {feats[name]['train'][0].shape[1]}, L2 {chosen['l2']:g})")


if __name__ == "__main__":
    main()

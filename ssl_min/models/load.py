"""Every checkpoint a user may hold -> a frozen encoder and the audio it expects.

    load_encoder(path, conv="reference") -> (encoder: SampleCNN in eval mode, in the formulation `conv`,
                           info: {"sample_rate", "chunk_samples", "source", "arch", "context", "train_config"})

A run of the masked objective gives its MaskedEncoder (SampleCNN + Transformer, context.py);
`build_encoder(*info["arch"], conv, info["context"])` builds the same architecture afresh.

Accepted:
* ssl_min's own (train.py): a dict with "model" and "config"; loaded strictly.
* CLMR's (Spijkervet/CLMR), in either form it writes, with CLMR's defaults (22050 Hz, 59049
  samples, 9 blocks, CLMR's channel widths):
  - a PyTorch Lightning checkpoint: {"pytorch-lightning_version", "state_dict": {"model.encoder.<k>", ...}};
  - a plain state dict of its SimCLR model: {"encoder.<k>", "projector.<k>", ...}.
  CLMR's SampleCNN is `sequential.<i>.<j>`: i = 0 the stem (Conv1d, BatchNorm1d, ReLU), i = 1..9 the
  blocks (Conv1d, BatchNorm1d, ReLU, MaxPool1d), i = 10 the last Conv1d/BatchNorm1d/ReLU; its `fc`
  is replaced by an identity in SimCLR (a supervised `fc` is dropped here). `clmr_to_ssl_min`
  renames those keys to ours, one explicit mapping; the result then loads strictly.
"""
import hashlib
import pickle

import torch

from ssl_min.models.build import build_encoder, context_of
from ssl_min.models.samplecnn import SampleCNN

CLMR_INFO = {"sample_rate": 22050, "chunk_samples": 59049, "n_blocks": 9}


def pick_device(name):
    """'auto' (CUDA when there is one), 'cpu' or 'cuda' -> torch.device."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else torch.device(name)


def clmr_to_ssl_min(clmr_encoder_state, n_blocks=9):
    """CLMR encoder keys (`sequential.<i>.<j>.<tensor>`, `fc.*`) -> SampleCNN keys (`net.<k>.<tensor>`).
    Our `net` is CLMR's nesting flattened: stem j -> j; block i (1-based) j -> 3 + 4 (i - 1) + j;
    the last conv (i = n_blocks + 1) j -> 3 + 4 n_blocks + j."""
    out = {}
    for key, value in clmr_encoder_state.items():
        parts = key.split(".")
        if parts[0] == "fc":
            continue                                  # a classifier (supervised CLMR): not the encoder
        if parts[0] != "sequential" or len(parts) != 4:
            raise KeyError(f"unexpected key in a CLMR encoder: {key}")
        i, j = int(parts[1]), int(parts[2])
        k = j if i == 0 else 3 + 4 * (i - 1) + j
        out[f"net.{k}.{parts[3]}"] = value
    return out


def _torch_load(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # PyTorch Lightning checkpoints carry Python objects (hyper-parameters); weights_only refuses them.
        print(f"note: {path} holds Python objects besides tensors (a PyTorch Lightning checkpoint?); "
              "loading it with pickle: only do this with files you trust")
        return torch.load(path, map_location="cpu", weights_only=False)


def load_encoder(path, conv="reference"):
    """-> (SampleCNN in eval mode, {"sample_rate", "chunk_samples", "source", "arch", "train_config"}).
    conv: the formulation it runs in ("reference" or "fast", models/fast.py). See the module doc."""
    ckpt = _torch_load(path)
    if isinstance(ckpt, dict) and "model" in ckpt and "config" in ckpt:          # ssl_min's own
        cfg = ckpt["config"]
        encoder = build_encoder(cfg["n_blocks"], cfg["width"], cfg["pool"], conv, context_of(cfg))
        encoder.load_state_dict({k[len("encoder."):]: v for k, v in ckpt["model"].items()
                                 if k.startswith("encoder.")})
        info = {"sample_rate": cfg["sample_rate"], "chunk_samples": cfg["chunk_samples"], "source": "ssl_min",
                "arch": (cfg["n_blocks"], cfg["width"], cfg["pool"]), "context": context_of(cfg), "train_config": cfg}
    elif isinstance(ckpt, dict) and "pytorch-lightning_version" in ckpt:          # CLMR, Lightning
        state = {k[len("model.encoder."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.encoder.")}
        encoder, info = _clmr(state, "CLMR (PyTorch Lightning checkpoint)", conv)
    elif isinstance(ckpt, dict) and any(k.startswith("encoder.") for k in ckpt):  # CLMR, plain state dict
        state = {k[len("encoder."):]: v for k, v in ckpt.items() if k.startswith("encoder.")}
        encoder, info = _clmr(state, "CLMR (state dict)", conv)
    else:
        raise ValueError(f"{path}: neither an ssl_min checkpoint (model + config) nor one of CLMR's "
                         "(a Lightning checkpoint with model.encoder.* keys, or a state dict with encoder.* keys)")
    return encoder.eval(), info


def _clmr(state, source, conv):
    if not state:
        raise ValueError("a CLMR checkpoint without encoder weights")
    encoder = SampleCNN(CLMR_INFO["n_blocks"], 1.0, "flatten", conv)
    encoder.load_state_dict(clmr_to_ssl_min(state, CLMR_INFO["n_blocks"]))       # strict
    return encoder, {"sample_rate": CLMR_INFO["sample_rate"], "chunk_samples": CLMR_INFO["chunk_samples"],
                     "source": source, "arch": (CLMR_INFO["n_blocks"], 1.0, "flatten"), "context": None,
                     "train_config": None}


def weights_id(module) -> str:
    """A fingerprint of a module's weights and buffers (sha1 of every tensor's bytes, in order): what
    names an encoder in a feature cache or an export, whatever file it was loaded from."""
    return hashlib.sha1(b"".join(v.detach().cpu().numpy().tobytes() for v in module.state_dict().values())).hexdigest()

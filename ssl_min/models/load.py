"""Every checkpoint a user may hold -> a frozen encoder and the audio it expects.

    load_encoder(path, conv="reference") -> (encoder: SampleCNN in eval mode, in the formulation `conv`,
                           info: {"sample_rate", "chunk_samples", "source", "arch", "context", "train_config"})

A run of the masked objective gives its MaskedEncoder (SampleCNN + Transformer, context.py);
`build_encoder(*info["arch"], conv, info["context"])` builds the same architecture afresh.

Every .pt file the project reads goes through `load_tensors`: torch.load with weights_only=True,
always. A pickle can run any code, so a file holding Python objects besides tensors is refused
(UntrustedFile) unless the user opts in for one file they trust (SSL_MIN_TRUST_PICKLE=PATH); the
plain-data classes of CLMR's checkpoints (argparse.Namespace, Lightning's AttributeDict) are
allowed by name. A file cut short (a full disk, a bad copy) raises DamagedFile, one line naming
it; caches catch it and compute the entry again.

    load_tensors(path, what, advice) -> the object, or DamagedFile / UntrustedFile (one line each)

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
import argparse
import hashlib
import os
import pickle
from pathlib import Path

import torch

from ssl_min.models.build import build_encoder, context_of
from ssl_min.models.samplecnn import SampleCNN

TRUST_ENV = "SSL_MIN_TRUST_PICKLE"


class DamagedFile(SystemExit):
    """A file this project wrote that cannot be read back. A SystemExit, so that uncaught it ends
    the program with its one line and no traceback; a cache catches it and rebuilds the entry."""


class UntrustedFile(SystemExit):
    """A .pt file whose pickle holds Python objects besides tensors: refused without running it."""


class _AttributeDict:
    """Stand-in for Lightning's AttributeDict (a dict subclass), what CLMR's checkpoints keep their
    hyper-parameters in: allowed by name, it unpickles as a plain dict (torch's safe unpickler
    fills only plain dicts), so those checkpoints load with weights_only=True."""

    def __new__(cls, *args):
        return dict(*args)


# Plain-data classes a checkpoint of CLMR's carries, allowed by name (nothing of theirs is imported).
SAFE_GLOBALS = [argparse.Namespace] + [(_AttributeDict, f"{m}.AttributeDict") for m in (
    "pytorch_lightning.utilities.parsing", "lightning.pytorch.utilities.parsing",
    "lightning_fabric.utilities.data", "lightning.fabric.utilities.data")]
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


def load_tensors(path, what="file", advice="delete it and compute it again"):
    """torch.load(path, weights_only=True) onto the CPU -> the object. Raises DamagedFile (the file is
    cut short or not a torch file) or UntrustedFile (it holds other Python objects), one line each
    naming `what` and `advice`; FileNotFoundError as torch does. A user who trusts one such file
    runs with SSL_MIN_TRUST_PICKLE=that path (the only place a full pickle is ever loaded)."""
    path = Path(path)
    trusted = os.environ.get(TRUST_ENV)
    try:
        if trusted and Path(trusted).resolve() == path.resolve():
            print(f"note: {path} loaded with pickle ({TRUST_ENV} names it): it can run any code it holds")
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower() or "unsupported global" in str(e).lower():
            raise UntrustedFile(f"{path}: refused, it holds Python objects besides tensors (a pickle can run "
                                f"code; ssl_min loads with weights_only=True). If you trust this file, run with "
                                f"{TRUST_ENV}={path}") from None
        damage = e
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 (whatever a cut-short zip or pickle raises: KeyError, EOFError, ...)
        damage = e
    raise DamagedFile(f"{path}: the {what} cannot be read, it is damaged (cut short by a full disk or a bad "
                      f"copy? {type(damage).__name__}: {str(damage)[:50]}); {advice}") from None


def load_encoder(path, conv="reference"):
    """-> (SampleCNN in eval mode, {"sample_rate", "chunk_samples", "source", "arch", "train_config"}).
    conv: the formulation it runs in ("reference" or "fast", models/fast.py). See the module doc."""
    ckpt = load_tensors(path, "checkpoint", "use another (best.pt), or train it again")
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

"""train.py's configuration: every field with its advice, the presets, and the checks that make
the saved config the one that ran.

    Config           one dataclass; each field's help text is its --flag's help
    PRESETS          starting values (ssl_min/presets.py: clmr, tutorial, demo, cpu)
    parse_args(argv) -> (args, {field: value given on the command line})
    resolve(cfg)     check(cfg): the config alone, checked, derived lengths filled in; then
                     choose_for_machine(cfg): device, precision and formulation on this machine
    get_lr(step)     the learning-rate schedule, a pure function of the step
"""
import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ssl_min.models.load import load_tensors
from ssl_min.objectives import OBJECTIVES
from ssl_min.presets import OBJECTIVE_DEFAULTS, PRESETS
from ssl_min.runtime.formulation import resolve_conv
from ssl_min.runtime.precision import auto_precision


def _bool(text):
    """A boolean flag's value: true/false, yes/no, 1/0; anything else is an error, not False."""
    value = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def F(default, help, choices=None):
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class Config:
    data: str = F("", "folder of audio (any layout, searched recursively) or a cache from `python "
                      "-m ssl_min.prepare`; required except for the demo preset")
    out: str = F("", "run folder: config.json, metrics.jsonl, checkpoint.pt, best.pt (default "
                     "runs/<preset>); an existing run is never overwritten")
    seed: int = F(0, "one seed for the model, the data order, the chunks and the augmentations")
    # audio and model
    sample_rate: int = F(22050, "the model's rate; files at other rates are resampled (CLMR: "
                                "22050)")
    n_blocks: int = F(9, "SampleCNN blocks; each divides time by 3 (CLMR: 9 -> 59049 samples)")
    width: float = F(1.0, "channel multiplier (CLMR: 1.0); 0.5 is ~4x cheaper")
    pool: str = F("flatten", "'flatten' (CLMR: chunk must be 3^(n_blocks+1)) or 'mean' (any chunk "
                             "length)", ["flatten", "mean"])
    chunk_samples: int = F(0, "samples per chunk; 0 = 3^(n_blocks+1), the receptive field")
    proj_hidden: int = F(512, "projector hidden width")
    proj_dim: int = F(64, "projector output (CLMR: 64); the loss sees this, the probe does not")
    sync_bn: bool = F(False, "torchrun: BatchNorm statistics over the global batch of every "
                             "process (SimCLR's global BN; CLMR: per process), so the gradients "
                             "equal one process with the whole batch; runs the reference "
                             "formulation (ssl_min/runtime/sync_bn.py)")
    bn_views: str = F("joint", "'joint': both views in one encoder pass (BatchNorm statistics over"
                               " all 2N clips); 'separate': CLMR's two passes, statistics per view",
                               ["joint", "separate"])
    # objective (ssl_min/objectives/)
    objective: str = F("simclr", "'simclr' (CLMR's NT-Xent), 'moco' (momentum encoder + queue), "
                                 "'vicreg', 'byol', 'cpc' (predict the next frames of one chunk: "
                                 "single chunks, no projector), or 'masked' (hide spans of frames;"
                                 " a Transformer predicts the teachers' tokens and spectrum there:"
                                 " HuBERT, MERT); cpc's and masked's defaults in "
                                 "OBJECTIVE_DEFAULTS apply over the preset", list(OBJECTIVES))
    queue_size: int = F(4096, "moco: negatives kept in the queue (MoCo v2: 65536 on ImageNet)")
    momentum: float = F(0.99, "moco: the key encoder's EMA momentum; byol: its base, raised to 1 "
                              "along a cosine")
    cpc_steps: int = F(12, "cpc: K, the future frames predicted from each context (the paper: 12)")
    cpc_context: int = F(256, "cpc: the GRU context network's width (the paper: 256)")
    context_layers: int = F(2, "masked: pre-LN Transformer layers over the frames "
                               "(ssl_min/models/context.py)")
    context_heads: int = F(4, "masked: attention heads (the frames' width must divide by it)")
    mask_prob: float = F(0.8, "masked: spans start so that mask_prob x frames would be masked "
                              "without overlap (HuBERT: 0.8, about half the frames once spans "
                              "overlap)")
    mask_span: int = F(5, "masked: frames per masked span")
    mask_tokens: int = F(64, "masked: K, the k-means centroids of log-mel + chroma frames (the "
                             "tokens)")
    w_tokens: float = F(1.0, "masked: weight of the tokens' cross-entropy (0: off)")
    w_spectrum: float = F(1.0, "masked: weight of the semitone spectrum's squared error (0: off)")
    mask_mix: float = F(0.0, "masked: P(another clip of the batch mixed into a clip, 5-15 dB "
                             "quieter: MERT's in-batch noise); the teachers read the clean clip")
    codebook_chunks: int = F(512, "masked: chunks of the pool whose frames fit the codebook "
                                  "(ssl_min/data/codebook.py)")
    # optimisation
    batch_size: int = F(48, "tracks per step per process; 2x chunks go through the model (CLMR: "
                            "48)")
    lr: float = F(3e-4, "Adam learning rate (CLMR: 3e-4; it scales roughly with batch size)")
    weight_decay: float = F(0.0, "Adam weight decay (CLMR: 0; try 1e-6 for long runs)")
    warmup_steps: int = F(0, "linear warm-up steps (CLMR: none)")
    schedule: str = F("constant", "'constant' (CLMR) or 'cosine' decay to 0 at max_steps",
                                  ["constant", "cosine"])
    temperature: float = F(0.5, "NT-Xent / MoCo temperature tau (CLMR: 0.5; lower is sharper, 0.1 "
                                "for large batches)")
    epochs: int = F(10000, "stop after this many epochs (an epoch: as many pairs as the data has "
                           "non-overlapping chunks)")
    max_steps: int = F(0, "stop after this many optimizer steps (0: no limit); required by "
                          "schedule=cosine, unless max_minutes sets it")
    max_minutes: float = F(0.0, "time budget from the command's start, cache build included: the "
                                "step time measured over the first 50 steps sets max_steps (logged"
                                " and saved; a given --max_steps caps it); 0: none "
                                "(ssl_min/runtime/budget.py)")
    # augmentations: probability of each effect per chunk (the chain of torchaudio-augmentations)
    p_polarity: float = F(0.8, "P(polarity inversion)")
    p_noise: float = F(0.01, "P(white noise)")
    min_snr: float = F(0.0001, "noise std / signal std, lower end")
    max_snr: float = F(0.01, "noise std / signal std, upper end")
    p_gain: float = F(0.3, "P(gain -20..-1 dB)")
    p_filter: float = F(0.8, "P(high- or low-pass, a coin flip)")
    lowpass_min: float = F(2200.0, "low-pass cutoff range, lower end (Hz); must sit below the "
                                   "Nyquist frequency")
    lowpass_max: float = F(4000.0, "low-pass cutoff range, upper end (Hz); must sit below "
                                   "sample_rate / 2")
    highpass_min: float = F(200.0, "high-pass cutoff range, lower end (Hz)")
    highpass_max: float = F(1200.0, "high-pass cutoff range, upper end (Hz)")
    p_delay: float = F(0.3, "P(delay 200..500 ms)")
    p_pitch: float = F(0.6, "P(pitch shift -7..+7 semitones) (CLMR: 0.6; a phase vocoder per "
                            "batch, the chain's dearest effect)")
    p_reverb: float = F(0.6, "P(sox-style reverb)")
    p_time_mask: float = F(0.0, "P(time mask: one segment of the chunk zeroed, after the other "
                                "effects; not in CLMR's chain)")
    time_mask_max: float = F(0.5, "the time mask's longest segment, as a fraction of the chunk")
    effect_reuse: int = F(1, "1: every chunk draws its own filter and reverb settings (CLMR); r > "
                             "1: each call draws B / r of them and deals each to ~r chunks, the "
                             "filter's and reverb's set-up cost / r (ssl_min/augment/shared.py)")
    cache: str = F("auto", "'auto': a folder of compressed files (or files at another rate) is "
                           "decoded once into FOLDER/.ssl_min_cache/<rate>hz, rebuilt when a file "
                           "changes; 'off': decode at every read; or a cache folder to build/reuse")
    augment_on: str = F("device", "'device': on the batch where the model runs (fast on GPU); "
                                  "'workers': per chunk in the DataLoader workers",
                                  ["device", "workers"])
    # machinery
    num_workers: int = F(2, "DataLoader worker processes (persistent); 0 reads in the main process")
    precision: str = F("auto", "'auto' (CUDA: bf16 where supported, else fp16; CPU: bf16 where "
                               "native and measured faster than fp32, else fp32: "
                               "ssl_min/runtime/precision.py), 'bf16', 'fp16', 'fp32'",
                               ["auto", "bf16", "fp16", "fp32"])
    device: str = F("auto", "'auto' (cuda if available), 'cpu', 'cuda'")
    dist_timeout: float = F(0.0, "torchrun: seconds a collective may wait before the run fails (0:"
                                 " torch's default, 10 min NCCL, 30 min gloo); the cache build "
                                 "before training waits apart, without a limit")
    conv: str = F("auto", "the encoder's formulation: 'reference' (CLMR's "
                          "Conv1d/BatchNorm1d/ReLU/MaxPool1d stack), 'fast' (the same function "
                          "channels-last, ssl_min/models/fast.py), or 'auto': on CUDA the "
                          "reference, on a CPU the fast one where a start-up timing finds it "
                          "faster (ssl_min/runtime/formulation.py)", ["auto", "reference", "fast"])
    compile: bool = F(False, "torch.compile the model (first steps slower; saves the uncompiled "
                             "weights)")
    log_every: int = F(10, "steps between lines in metrics.jsonl")
    monitor: str = F("", "a labeled folder (any layout probe.py accepts, e.g. data/demo): a "
                         "weighted kNN on the frozen encoder's embeddings of its train tracks "
                         "scores its valid tracks every monitor_every steps (and at step 0), "
                         "logged to metrics.jsonl and the progress bar as knn_accuracy (classes) "
                         "or knn_pr_auc (tags); '' for none (ssl_min/evaluate/monitor.py)")
    monitor_every: int = F(0, "steps between kNN monitor readings; 0: a tenth of max_steps (100 "
                              "without max_steps)")
    ckpt_every: int = F(200, "steps between checkpoint.pt writes (also at every epoch end)")


RESUME_MAY_CHANGE = {"epochs", "max_steps", "num_workers", "log_every", "ckpt_every", "device", "compile", "conv",
                     "monitor", "monitor_every", "dist_timeout"}


def parse_args(argv=None, description=""):
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="clmr",
                        help="starting values for every field below; flags given override them")
    parser.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt exactly where it stopped")
    for f in dataclasses.fields(Config):
        kind = _bool if f.type is bool else f.type
        presets = "; ".join(f"{p}: {v[f.name]}" for p, v in PRESETS.items() if f.name in v)
        parser.add_argument(f"--{f.name}", type=kind, default=None, choices=f.metadata["choices"],
                            help=f"{f.metadata['help']} (default {f.default}" + (f"; {presets})" if presets else ")"))
    args = parser.parse_args(argv)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if getattr(args, f.name) is not None}
    return args, given


def resolve(cfg: Config, notes: list | None = None) -> Config:
    """Derived fields made explicit and checked, so the saved config is the one that ran: the
    checks first (pure: the config alone), then the choices that depend on this machine.
    notes: if a list, how a derived field was chosen is appended to it (for the log)."""
    check(cfg)
    choose_for_machine(cfg, notes)
    return cfg


def check(cfg: Config) -> Config:
    """The config alone: derived lengths filled in, and every combination that cannot run refused
    in one line (SystemExit) before anything is built."""
    receptive = 3 ** (cfg.n_blocks + 1)
    if cfg.chunk_samples == 0:
        cfg.chunk_samples = receptive
    if cfg.pool == "flatten" and cfg.chunk_samples != receptive:
        raise SystemExit(f"pool=flatten needs chunk_samples == 3^(n_blocks+1) = {receptive}; use --pool mean")
    if cfg.schedule == "cosine" and cfg.max_steps <= 0 and cfg.max_minutes <= 0:
        raise SystemExit("schedule=cosine needs --max_steps (or --max_minutes, which measures it)")
    if cfg.max_minutes < 0:
        raise SystemExit(f"max_minutes must be >= 0, got {cfg.max_minutes}")
    if not cfg.data:
        raise SystemExit("--data is required: a folder of audio, or a cache from `python -m ssl_min.prepare`")
    nyquist = cfg.sample_rate / 2
    for name in ("lowpass_min", "lowpass_max", "highpass_min", "highpass_max"):
        if not 0 < getattr(cfg, name) < nyquist:
            raise SystemExit(f"{name} = {getattr(cfg, name):g} Hz must lie in (0, {nyquist:g}) Hz, below the "
                             f"Nyquist frequency of sample_rate {cfg.sample_rate}; set --{name}")
    if cfg.monitor_every < 0:
        raise SystemExit(f"monitor_every must be >= 0 (0: a tenth of max_steps), got {cfg.monitor_every}")
    if cfg.monitor_every == 0:
        cfg.monitor_every = max(1, cfg.max_steps // 10) if cfg.max_steps > 0 else 100
    if cfg.monitor and not Path(cfg.monitor).is_dir():
        raise SystemExit(f"--monitor {cfg.monitor}: not a folder (a labeled layout, as probe.py --data takes)")
    if cfg.objective == "cpc" and (cfg.pool != "mean" or cfg.chunk_samples // receptive <= cfg.cpc_steps):
        raise SystemExit(f"objective cpc predicts frames: it needs pool=mean and a chunk of at least cpc_steps + 1 = "
                         f"{cfg.cpc_steps + 1} frames of {receptive} samples, got pool={cfg.pool}, "
                         f"chunk_samples={cfg.chunk_samples}")
    if cfg.objective in ("cpc", "masked") and cfg.bn_views == "separate":
        raise SystemExit(f"bn_views=separate splits the two views of a pair; objective {cfg.objective} reads single chunks")
    if cfg.objective == "masked":
        frames = cfg.chunk_samples // receptive
        if cfg.pool != "mean" or frames < 2 * cfg.mask_span:
            raise SystemExit(f"objective masked hides spans of frames: it needs pool=mean and a chunk of at least "
                             f"2 x mask_span = {2 * cfg.mask_span} frames of {receptive} samples, got pool={cfg.pool}, "
                             f"{frames} frame(s)")
        if not 0 < cfg.mask_prob <= 1 or cfg.mask_span < 1 or cfg.mask_tokens < 2 or not 0 <= cfg.mask_mix <= 1:
            raise SystemExit("masked: mask_prob in (0, 1], mask_span >= 1, mask_tokens >= 2, mask_mix in [0, 1]")
        if cfg.w_tokens < 0 or cfg.w_spectrum < 0 or cfg.w_tokens + cfg.w_spectrum == 0:
            raise SystemExit("masked: w_tokens and w_spectrum are >= 0 and not both 0 (nothing to predict)")
    if cfg.effect_reuse < 1:
        raise SystemExit(f"effect_reuse must be >= 1 (1: every chunk its own settings), got {cfg.effect_reuse}")
    if not 0 <= cfg.time_mask_max <= 1:
        raise SystemExit(f"time_mask_max is a fraction of the chunk, in [0, 1]; got {cfg.time_mask_max:g}")
    if cfg.lowpass_min > cfg.lowpass_max or cfg.highpass_min > cfg.highpass_max:
        raise SystemExit("a cutoff range's min is above its max")
    if cfg.sync_bn and cfg.conv == "fast":
        raise SystemExit("--sync_bn runs CLMR's module stack: use --conv reference (or auto), not fast (its "
                         "folded stem keeps per-process statistics)")
    return cfg


def choose_for_machine(cfg: Config, notes: list | None = None) -> Config:
    """device, precision and conv: 'auto' resolved on this machine (precision and conv measured once
    per machine and remembered: ssl_min/runtime/remembered.py), said in `notes`."""
    if cfg.device == "auto":
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.precision == "auto":                 # measured where it can go either way (runtime/precision.py)
        cfg.precision, why = auto_precision(cfg.device)
        if notes is not None:
            notes.append(f"precision auto -> {cfg.precision}: {why}")
    if cfg.sync_bn and cfg.conv == "auto":
        cfg.conv = "reference"
        if notes is not None:
            notes.append("conv reference: --sync_bn synchronises the module stack's BatchNorms")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)   # auto measures in it
    cfg.conv, line = resolve_conv(cfg.conv, cfg.device, (cfg.n_blocks, cfg.width, cfg.pool), cfg.chunk_samples,
                                  train=True, dtype=dtype)
    if notes is not None:
        notes.append(line)
    return cfg


def get_lr(step, cfg):
    """Pure function of the step: linear warm-up, then constant or cosine decay to 0 at max_steps
    (the peak while a time budget has not set max_steps yet)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine" and cfg.max_steps > 0:
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr


def config_for_run(args, given, notes=None):
    """The run folder's rules, then the config: the preset and the flags for a new run (never into
    a folder that holds one), or the checkpoint's own config on --resume (only RESUME_MAY_CHANGE
    fields may be given; the device is resolved again, the machine may have changed).
    -> (cfg, checkpoint dict or None)."""
    out = Path(given.get("out") or f"runs/{args.preset}")
    given = {**given, "out": str(out)}
    last = out / "checkpoint.pt"
    if args.resume and not last.exists():
        raise SystemExit(f"--resume: no checkpoint at {last} (a run writes one every ckpt_every steps and "
                         "at every epoch end); start the run without --resume")
    if not args.resume:
        if last.exists():
            step = load_tensors(last, "checkpoint", "pick another --out, or resume from best.pt (copy it over "
                                "checkpoint.pt, then --resume)")["step"]
            raise SystemExit(f"{out} already holds a run (checkpoint.pt at step {step}): continue it with "
                             "--resume, or pick another --out (or delete the folder)")
        objective = given.get("objective", PRESETS[args.preset].get("objective", "simclr"))
        own = {k: v for k, v in OBJECTIVE_DEFAULTS.get(objective, {}).items() if k not in given}
        if own and notes is not None:
            notes.append(f"objective {objective}: " + ", ".join(f"{k} {v}" for k, v in own.items())
                         + " (its defaults, over the preset's)")
        return resolve(Config(**{**PRESETS[args.preset], **own, **given}), notes), None
    ckpt = load_tensors(last, "checkpoint", "resume from best.pt instead (copy it over checkpoint.pt; it is "
                        "the lowest-loss epoch end), or start a new run (another --out)")
    cfg = Config(**ckpt["config"])
    changed = {k for k, v in given.items() if getattr(cfg, k) != v} - RESUME_MAY_CHANGE - {"out"}
    if changed:
        raise SystemExit(f"--resume keeps the run's config; cannot change {sorted(changed)}")
    for k in RESUME_MAY_CHANGE & set(given):
        setattr(cfg, k, given[k])
    cfg.out = str(out)                          # the folder may have moved
    if "device" not in given:
        cfg.device = "auto"
    return resolve(cfg, notes), ckpt

"""Contrastive pretraining (CLMR / SimCLR) of SampleCNN on unlabeled music: the whole loop, by hand.

    python train.py --data data/demo/unlabeled --preset demo --out runs/demo       # make pretrain
    python train.py --data ~/music --preset clmr --out runs/clmr --batch_size 96
    python train.py --out runs/demo --resume                                       # exact resume
    torchrun --nproc_per_node=4 train.py --data ~/music --preset clmr --out runs/clmr4

Each step: a batch of tracks -> two random chunks per track -> random audio effects on each ->
SampleCNN + projector -> NT-Xent, where the other tracks in the batch (on every process) are the
negatives. Writes RUN/config.json, RUN/metrics.jsonl, RUN/checkpoint.pt (last) and RUN/best.pt.
"""
import argparse
import dataclasses
import json
import math
import os
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from tqdm import tqdm

from ssl_min.augment import build_chain
from ssl_min.checkpoint import save_atomic, write_text_atomic
from ssl_min.audio import is_cache, scan_folder, tracks_from
from ssl_min.pairs import PairDataset, StreamSampler
from ssl_min.prepare import ensure_cache, needs_cache
from ssl_min.loss import NTXent
from ssl_min.model import build_model


def F(default, help, choices=None):
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class Config:
    data: str = F("data/demo/unlabeled", "folder of audio (any layout, searched recursively) or a cache from `python -m ssl_min.prepare`")
    out: str = F("runs/demo", "run folder: config.json, metrics.jsonl, checkpoint.pt, best.pt")
    seed: int = F(0, "one seed for the model, the data order, the chunks and the augmentations")
    # audio and model
    sample_rate: int = F(22050, "the model's rate; files at other rates are resampled (CLMR: 22050)")
    n_blocks: int = F(9, "SampleCNN blocks; each divides time by 3 (CLMR: 9 -> 59049 samples)")
    width: float = F(1.0, "channel multiplier (CLMR: 1.0); 0.5 is ~4x cheaper")
    pool: str = F("flatten", "'flatten' (CLMR: chunk must be 3^(n_blocks+1)) or 'mean' (any chunk length)", ["flatten", "mean"])
    chunk_samples: int = F(0, "samples per chunk; 0 = 3^(n_blocks+1), the receptive field")
    proj_hidden: int = F(512, "projector hidden width")
    proj_dim: int = F(64, "projector output (CLMR: 64); the loss sees this, the probe does not")
    # optimisation
    batch_size: int = F(48, "tracks per step per process; 2x chunks go through the model (CLMR: 48)")
    lr: float = F(3e-4, "Adam learning rate (CLMR: 3e-4; it scales roughly with batch size)")
    weight_decay: float = F(0.0, "Adam weight decay (CLMR: 0; try 1e-6 for long runs)")
    warmup_steps: int = F(0, "linear warm-up steps (CLMR: none)")
    schedule: str = F("constant", "'constant' (CLMR) or 'cosine' decay to 0 at max_steps", ["constant", "cosine"])
    temperature: float = F(0.5, "NT-Xent temperature tau (CLMR: 0.5; lower is sharper, 0.1 for large batches)")
    epochs: int = F(10000, "stop after this many epochs (an epoch: as many pairs as the data has non-overlapping chunks)")
    max_steps: int = F(0, "stop after this many optimizer steps (0: no limit); required by schedule=cosine")
    # augmentations: probability of each effect per chunk (the chain of torchaudio-augmentations)
    p_polarity: float = F(0.8, "P(polarity inversion)")
    p_noise: float = F(0.01, "P(white noise)")
    min_snr: float = F(0.0001, "noise std / signal std, lower end")
    max_snr: float = F(0.01, "noise std / signal std, upper end")
    p_gain: float = F(0.3, "P(gain -20..-1 dB)")
    p_filter: float = F(0.8, "P(high- or low-pass, a coin flip)")
    p_delay: float = F(0.3, "P(delay 200..500 ms)")
    p_reverb: float = F(0.6, "P(sox-style reverb)")
    cache: str = F("auto", "'auto': a folder of compressed files (or files at another rate) is decoded once into FOLDER/.ssl_min_cache/<rate>hz, rebuilt when a file changes; 'off': decode at every read; or a cache folder to build/reuse")
    augment_on: str = F("device", "'device': on the batch where the model runs (fast on GPU); 'workers': per chunk in the DataLoader workers", ["device", "workers"])
    # machinery
    num_workers: int = F(2, "DataLoader worker processes (persistent); 0 reads in the main process")
    precision: str = F("auto", "'auto' (bf16 where supported, else fp16 on CUDA, else fp32), 'bf16', 'fp16', 'fp32'", ["auto", "bf16", "fp16", "fp32"])
    device: str = F("auto", "'auto' (cuda if available), 'cpu', 'cuda'")
    compile: bool = F(False, "torch.compile the model (first steps slower; saves the uncompiled weights)")
    log_every: int = F(10, "steps between lines in metrics.jsonl")
    ckpt_every: int = F(200, "steps between checkpoint.pt writes (also at every epoch end)")


PRESETS = {
    "clmr": {},  # the dataclass defaults are CLMR's paper settings
    "tutorial": dict(pool="mean", chunk_samples=59535, batch_size=96, lr=1e-4, p_polarity=0.8,
                     p_noise=0.3, min_snr=0.001, max_snr=0.005, p_gain=0.2, p_filter=1.0,
                     p_delay=0.5, p_reverb=0.3),
    # ~5 minutes on 2 CPU cores: 0.82 s chunks at 8 kHz, a quarter-width SampleCNN (87,744 params).
    "demo": dict(sample_rate=8000, n_blocks=7, width=0.25, batch_size=128, lr=2e-3, warmup_steps=20,
                 schedule="cosine", max_steps=400, temperature=0.2, p_reverb=0.3, num_workers=1,
                 ckpt_every=100),
    # Real music on a 2-core CPU in at most 20 minutes (bench/real_music.py; README, "Real music").
    "cpu": dict(sample_rate=8000, n_blocks=7, width=0.25, pool="mean", chunk_samples=6561, batch_size=96,
                lr=2e-3, warmup_steps=30, schedule="cosine", max_steps=1200, temperature=0.2, p_reverb=0.3,
                num_workers=1, ckpt_every=100),
}
RESUME_MAY_CHANGE = {"epochs", "max_steps", "num_workers", "log_every", "ckpt_every", "device", "compile"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="clmr",
                        help="starting values for every field below; flags given override them")
    parser.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt exactly where it stopped")
    for f in dataclasses.fields(Config):
        kind = (lambda s: s.lower() in ("1", "true", "yes")) if f.type is bool else f.type
        presets = "; ".join(f"{p}: {v[f.name]}" for p, v in PRESETS.items() if f.name in v)
        parser.add_argument(f"--{f.name}", type=kind, default=None, choices=f.metadata["choices"],
                            help=f"{f.metadata['help']} (default {f.default}" + (f"; {presets})" if presets else ")"))
    args = parser.parse_args(argv)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if getattr(args, f.name) is not None}
    return args, given


def resolve(cfg: Config) -> Config:
    """Derived fields made explicit and checked, so the saved config is the one that ran."""
    receptive = 3 ** (cfg.n_blocks + 1)
    if cfg.chunk_samples == 0:
        cfg.chunk_samples = receptive
    if cfg.pool == "flatten" and cfg.chunk_samples != receptive:
        raise SystemExit(f"pool=flatten needs chunk_samples == 3^(n_blocks+1) = {receptive}; use --pool mean")
    if cfg.schedule == "cosine" and cfg.max_steps <= 0:
        raise SystemExit("schedule=cosine needs --max_steps")
    if cfg.device == "auto":
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.precision == "auto":
        if cfg.device == "cuda":
            cfg.precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            cfg.precision = "bf16" if torch.cpu._is_avx512_bf16_supported() else "fp32"
    return cfg


def get_lr(step, cfg):
    """Pure function of the step: linear warm-up, then constant or cosine decay to 0."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine":
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr


def trim_metrics(path, step):
    """Drop rows logged after the checkpoint (a kill -9 between two checkpoints leaves them):
    the resumed run logs those steps again, so each step appears once."""
    if path.exists():
        rows = [r for r in path.read_text().splitlines() if r and json.loads(r)["step"] <= step]
        write_text_atomic(path, "".join(r + "\n" for r in rows))


class StopRequest:
    """SIGINT and SIGTERM only set a flag; the loop reads it at a step boundary and saves there.

    Why not Python's KeyboardInterrupt: (1) a child started from a non-interactive shell with `&`,
    or by a parent that ignores SIGINT, inherits SIGINT *ignored*, and Python then installs no
    KeyboardInterrupt handler at all: Ctrl-C would do nothing. Installing our own handler makes
    the signal work whatever the inherited disposition. (2) An exception can land between the
    optimizer step and `step += 1`, saving update s+1 labelled as step s; a flag read between
    steps cannot. A second signal while the first is pending leaves at once (KeyboardInterrupt)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def main(argv=None):
    args, given = parse_args(argv)
    out = Path(given.get("out", Config.out))

    # ---- config: preset, then flags; or the checkpoint's, on --resume
    ckpt = None
    if args.resume:
        ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
        cfg = Config(**ckpt["config"])
        changed = {k for k, v in given.items() if getattr(cfg, k) != v} - RESUME_MAY_CHANGE - {"out"}
        if changed:
            raise SystemExit(f"--resume keeps the run's config; cannot change {sorted(changed)}")
        for k in RESUME_MAY_CHANGE & set(given):
            setattr(cfg, k, given[k])
        if "device" not in given:               # the machine may have changed: resolve it again
            cfg.device = "auto"
        cfg = resolve(cfg)
    else:
        cfg = resolve(Config(**{**PRESETS[args.preset], **given}))

    # ---- processes: torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; otherwise one process
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank, local_rank = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    if world > 1:
        dist.init_process_group("nccl" if cfg.device == "cuda" else "gloo")
    device = torch.device(f"cuda:{local_rank}" if cfg.device == "cuda" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    master = rank == 0
    say = print if master else (lambda *a, **k: None)
    if master:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    say(f"config ({'resumed' if ckpt else 'preset ' + args.preset}, {world} process(es)):\n"
        + json.dumps(dataclasses.asdict(cfg), indent=2))

    # ---- data: an endless stream of pairs; augmentations on the device or in the workers
    torch.manual_seed(cfg.seed)
    chain = build_chain(cfg.sample_rate, cfg.p_polarity, cfg.p_noise, cfg.min_snr, cfg.max_snr,
                        cfg.p_gain, cfg.p_filter, cfg.p_delay, cfg.p_reverb)
    dataset = PairDataset(training_tracks(cfg, master, world), cfg.chunk_samples, seed=cfg.seed, verbose=master,
                          transform=chain if cfg.augment_on == "workers" else None)
    if len(dataset.tracks) < 2:
        raise SystemExit(f"{cfg.data}: {len(dataset.tracks)} usable track(s); contrastive learning needs at least 2 "
                         "(the other tracks are the negatives)")
    global_batch = cfg.batch_size * world
    steps_per_epoch = max(1, len(dataset) // global_batch)     # an epoch: the data's chunks, once
    total_steps = cfg.max_steps or steps_per_epoch * cfg.epochs
    aug_gen = torch.Generator(device).manual_seed(cfg.seed * 1000 + rank)

    # ---- model, optimizer, precision
    orig_model = build_model(cfg.n_blocks, cfg.width, cfg.pool, cfg.proj_hidden, cfg.proj_dim).to(device)
    optimizer = torch.optim.Adam(orig_model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[cfg.precision]
    ctx = nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    criterion = NTXent(cfg.temperature)
    step, best_loss, epoch_loss = 0, float("inf"), 0.0
    if ckpt:
        if ckpt.get("world", 1) != world:
            raise SystemExit(f"--resume: the run used {ckpt.get('world', 1)} process(es), this is {world}; "
                             "the stream of pairs (and the batch) would differ. Resume with the same count.")
        orig_model.load_state_dict(ckpt["model"])               # strict: every key must match
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        step, best_loss, epoch_loss = ckpt["step"], ckpt["best_loss"], ckpt["epoch_loss"]
        torch.set_rng_state(ckpt["rng"]["torch"])
        state = ckpt["rng"]["augment"][rank]
        if state.numel() == aug_gen.get_state().numel():
            aug_gen.set_state(state)
        else:                                   # a CUDA generator's state on a CPU run, or back
            aug_gen.manual_seed(cfg.seed * 1000 + rank + 7919 * step)
            say("note: resumed on another device type: the augmentation stream is reseeded (not bit-exact)")
        say(f"resumed from {out / 'checkpoint.pt'} at step {step}")
        if master:
            trim_metrics(out / "metrics.jsonl", step)
    model = torch.compile(orig_model) if cfg.compile else orig_model
    if world > 1:
        model = DDP(model, device_ids=[local_rank] if device.type == "cuda" else None)
    n_params = sum(p.numel() for p in orig_model.encoder.parameters())
    say(f"{len(dataset.tracks)} tracks, {len(dataset)} chunks: an epoch is {steps_per_epoch} steps of "
        f"{global_batch} pairs; encoder {n_params:,} parameters; {cfg.precision} on {device}")
    if len(dataset.tracks) < global_batch:
        say(f"note: {len(dataset.tracks)} tracks < batch {global_batch}: tracks repeat within a batch, and "
            "pairs of the same track are masked out of each other's negatives")

    # One DataLoader iterator for the whole run: workers prefetch straight across epoch ends.
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=StreamSampler(cfg.batch_size, step, rank, world),
                        num_workers=cfg.num_workers, pin_memory=device.type == "cuda")

    def checkpoint(path):
        """Called on every process (the augmentation streams are gathered); rank 0 writes."""
        states = [aug_gen.get_state()]
        if world > 1:
            states = [None] * world
            dist.all_gather_object(states, aug_gen.get_state())
        if not master:
            return
        save_atomic({"model": orig_model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scaler": scaler.state_dict(), "step": step, "epoch": step // steps_per_epoch,
                     "best_loss": best_loss, "epoch_loss": epoch_loss, "world": world,
                     "config": dataclasses.asdict(cfg),
                     "rng": {"torch": torch.get_rng_state(), "augment": [s.cpu() for s in states]}}, path)

    stop = StopRequest()            # Ctrl-C / SIGTERM: finish the step, save it, leave
    metrics = open(out / "metrics.jsonl", "a") if master else None
    bar = tqdm(total=total_steps, initial=step, disable=not master, unit="step",
               dynamic_ncols=True, mininterval=1 if sys.stderr.isatty() else 30)
    model.train()
    try:
        t_log, wait, n_clips = time.perf_counter(), 0.0, 0
        t0 = time.perf_counter()
        for x1, x2, ids in loader:
            if step >= total_steps:
                break
            wait += time.perf_counter() - t0
            x = torch.cat([x1, x2]).to(device, non_blocking=True)          # (2N, 1, T): views stacked
            if cfg.augment_on == "device":
                x = chain(x, generator=aug_gen)
            lr = get_lr(step, cfg)
            for g in optimizer.param_groups:
                g["lr"] = lr
            with ctx:
                z = model(x)                                               # (2N, proj_dim)
                loss = criterion(*z.chunk(2), ids=ids.to(device))          # views 1 vs views 2
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            # One reduction carries the loss and the stop request: every rank agrees to stop
            # at the same step boundary, so no rank sits in a collective the others never join.
            reduced = torch.tensor([loss.detach().float().item(), float(stop.requested)], device=device)
            if world > 1:
                dist.all_reduce(reduced)
            loss_value, stopping = reduced[0].item() / world, reduced[1].item() > 0
            if not math.isfinite(loss_value):
                say(f"\nnon-finite loss ({loss_value}) at step {step}: stopping. The last good "
                    f"checkpoint ({out / 'checkpoint.pt'}, step <= {step}) is untouched.")
                raise SystemExit(2)
            step += 1
            n_clips += x.shape[0] * world
            epoch_loss += loss_value
            if master and step % cfg.log_every == 0:
                dt = time.perf_counter() - t_log
                row = {"step": step, "epoch": (step - 1) // steps_per_epoch, "loss": loss_value, "lr": lr,
                       "clips_per_s": n_clips / dt, "data_wait": wait / dt}
                metrics.write(json.dumps(row) + "\n")
                metrics.flush()
                t_log, wait, n_clips = time.perf_counter(), 0.0, 0
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", refresh=False)
            if step % steps_per_epoch == 0:         # a whole epoch: best.pt compares whole epochs only
                if epoch_loss / steps_per_epoch < best_loss:
                    best_loss = epoch_loss / steps_per_epoch
                    checkpoint(out / "best.pt")
                epoch_loss = 0.0
            if stopping:                          # a whole step is done: save exactly step `step`
                checkpoint(out / "checkpoint.pt")
                say(f"\ninterrupted: saved {out / 'checkpoint.pt'} at step {step}; continue with --resume")
                raise SystemExit(130)
            if step % cfg.ckpt_every == 0 or step % steps_per_epoch == 0 or step == total_steps:
                checkpoint(out / "checkpoint.pt")
            if step >= total_steps:
                break
            t0 = time.perf_counter()
    finally:
        stop.restore()
        bar.close()
        if metrics:
            metrics.close()
        if world > 1 and dist.is_initialized():
            if sys.exc_info()[0] is None:
                dist.barrier()         # leave together: a peer closing its socket first can abort gloo
            dist.destroy_process_group()
    best = (f"best {out / 'best.pt'} (epoch-mean loss {best_loss:.4f})" if math.isfinite(best_loss) else
            f"no best.pt: the run was shorter than one epoch ({steps_per_epoch} steps)")
    say(f"done: {step} steps ({step / steps_per_epoch:.1f} epochs); last {out / 'checkpoint.pt'}, {best}")


def training_tracks(cfg, master, world):
    """The tracks to pretrain on: a cache folder as it is; a folder of audio scanned, and, with
    cache=auto, decoded once into a cache when its files are compressed or at another rate."""
    if is_cache(cfg.data):
        return tracks_from(cfg.data, cfg.sample_rate, verbose=master)
    if cfg.cache == "off":
        return scan_folder(cfg.data, cfg.sample_rate, verbose=master)[0]
    cache_dir = None if cfg.cache == "auto" else cfg.cache
    if master:                                  # one process scans and decodes; the others wait
        tracks, report = scan_folder(cfg.data, cfg.sample_rate, verbose=True)
        if cfg.cache == "auto" and not needs_cache(tracks, cfg.sample_rate):
            print("files are uncompressed and at the model's rate: read directly, no cache needed")
            cache_dir = ""
        else:
            cache_dir = str(ensure_cache(tracks, cfg.data, cfg.sample_rate, cache_dir, skipped=report.skipped))
    if world > 1:
        box = [cache_dir]
        dist.broadcast_object_list(box, src=0)
        cache_dir = box[0]
    if cache_dir == "":
        return scan_folder(cfg.data, cfg.sample_rate, verbose=False)[0]
    return tracks_from(cache_dir, cfg.sample_rate, verbose=master)


if __name__ == "__main__":
    main()

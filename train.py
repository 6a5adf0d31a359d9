"""Contrastive pretraining (CLMR / SimCLR) of SampleCNN on unlabeled music: the whole loop, by hand.

    python train.py --preset demo                                  # make pretrain (the built-in data)
    python train.py --data ~/music --preset cpu                    # real music on a laptop, <= 20 min
    python train.py --data ~/music --preset clmr --out runs/clmr --batch_size 96
    python train.py --out runs/clmr --resume                       # exact resume
    torchrun --nproc_per_node=4 train.py --data ~/music --preset clmr --out runs/clmr4

Each step: a batch of pairs -> two random chunks of one track per pair -> random audio effects on
each -> SampleCNN + projector -> the objective: NT-Xent by default, where the other tracks in the
batch (on every process) are the negatives; `--objective moco|vicreg|byol` for the others.
`--objective cpc` learns from single chunks by predicting their next frames, `--objective masked`
by predicting hidden spans of frames from the rest (HuBERT, MERT; ssl_min/objectives/). Writes
RUN/config.json, RUN/metrics.jsonl, RUN/checkpoint.pt (last) and RUN/best.pt (the lowest loss over
a whole epoch); masked also RUN/codebook.pt, its teachers' k-means. Configuration: ssl_min/config.py.
"""
import dataclasses
import hashlib
import json
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from tqdm import tqdm

from ssl_min.augment import chain_for
from ssl_min.config import config_for_run, get_lr, parse_args
from ssl_min.data import PairDataset, StreamSampler, open_tracks
from ssl_min.data.codebook import fit_codebook
from ssl_min.evaluate.monitor import KNNMonitor
from ssl_min.models import build_model, context_of
from ssl_min.models.load import load_tensors
from ssl_min.objectives import build_objective
from ssl_min.runtime import distributed, sync_bn
from ssl_min.runtime.atomic import save_atomic, trim_metrics, write_text_atomic
from ssl_min.runtime.budget import TimeBudget
from ssl_min.runtime.cpu_memory import keep_freed_memory


def training_tracks(cfg, p):
    """The tracks to pretrain on (ssl_min/data/source.py): a cache folder as it is; a folder of
    audio scanned and, with cache=auto, decoded once when its files are compressed or at another
    rate. Rank 0 scans and decodes while the others wait, however long it takes (rank0_first:
    no collective that could time out); then they read what it wrote."""
    tracks = distributed.rank0_first(p, lambda: open_tracks(cfg.data, cfg.sample_rate, cfg.cache)[0])
    return tracks if p.master else open_tracks(cfg.data, cfg.sample_rate, cfg.cache, build=False, verbose=False)[0]


def install_codebook(cfg, p, objective, tracks, out):
    """The masked objective's teachers get their codebook (ssl_min/data/codebook.py): rank 0 fits it
    into OUT/codebook.pt while the others wait (no collective that could time out); every process
    installs that file's tensors, so all hold the same ones."""
    path = out / "codebook.pt"

    def fit():
        t = time.perf_counter()
        save_atomic(fit_codebook(tracks, objective.teachers, cfg.chunk_samples, cfg.seed, cfg.codebook_chunks), path)
        print(f"codebook: {cfg.mask_tokens} centroids of the teachers' frames in {cfg.codebook_chunks} chunks "
              f"({time.perf_counter() - t:.1f} s) -> {path}")

    distributed.rank0_first(p, fit)
    objective.teachers.set_codebook(**load_tensors(path, "codebook", "delete it; the next start fits it again"))


def on_device(batch, device):
    """A loader batch (view 1, view 2, ids) -> x (2N, 1, T), the views stacked, and ids (N,), on the
    device (CPC and masked: one view, x (N, 1, T))."""
    *views, ids = batch
    return torch.cat(views).to(device, non_blocking=True), ids.to(device, non_blocking=True)


def train_step(model, objective, optimizer, scaler, ctx, x, ids, lr, progress, groups=1):
    """One optimizer step on x (2N, 1, T), the augmented views (CPC, masked: single chunks) -> the loss
    (a 0-d tensor, detached). progress = step / total steps (BYOL's momentum schedule reads it);
    groups 2: BatchNorm statistics per view (--bn_views separate)."""
    for g in optimizer.param_groups:
        g["lr"] = lr
    with ctx:
        loss = objective(model, x, ids, groups=groups)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    objective.after_step(model, progress)                              # momentum targets follow
    return loss.detach()


@dataclasses.dataclass
class LoopState:
    """What the loop carries from step to step, and a checkpoint saves besides the weights."""
    step: int = 0
    best_loss: float = math.inf                 # the lowest epoch-mean loss (best.pt's)
    epoch_loss: float = 0.0                     # the running sum over the current epoch
    saved_step: int | None = None               # the step checkpoint.pt holds, once there is one


def start_folder(out, resumed):
    """The run folder, created; a run killed before its first checkpoint (config.json and metrics.jsonl,
    no checkpoint.pt) is cleared, so a new run never appends to it."""
    out.mkdir(parents=True, exist_ok=True)
    left = [] if resumed else [f for f in ("metrics.jsonl", "config.json") if (out / f).exists()]
    if left:
        print(f"note: {out} held a run stopped before its first checkpoint ({', '.join(left)}, no checkpoint.pt); "
              "starting the folder clean")
        for f in left:
            (out / f).unlink()


def restore(ckpt, p, cfg, data_id, orig_model, objective, optimizer, scaler, aug_gen, say):
    """--resume: every state the checkpoint holds put back, so the run continues bit for bit -> LoopState.
    Refuses another process count or changed data (the stream of pairs would differ)."""
    if ckpt.get("world", 1) != p.world:
        raise SystemExit(f"--resume: the run used {ckpt.get('world', 1)} process(es), this is {p.world}; the "
                         "stream of pairs and the batch would differ. Resume with the same count.")
    if ckpt.get("data_id", data_id) != data_id:
        raise SystemExit(f"--resume: the data under {cfg.data} changed since the checkpoint (tracks added, removed "
                         "or changed): the stream of pairs would differ. Start a new run (another --out).")
    orig_model.load_state_dict(ckpt["model"])               # strict: every key must match
    objective.load_state_dict(ckpt.get("objective", {}))    # simclr has no state
    optimizer.load_state_dict(ckpt["optimizer"])
    scaler.load_state_dict(ckpt["scaler"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    state = ckpt["rng"]["augment"][p.rank]
    if state.numel() == aug_gen.get_state().numel():
        aug_gen.set_state(state)
    else:                                       # a CUDA generator's state on a CPU run, or back
        aug_gen.manual_seed(cfg.seed * 1000 + p.rank + 7919 * ckpt["step"])
        say("note: resumed on another device type: the augmentation stream is reseeded (not bit-exact)")
    return LoopState(ckpt["step"], ckpt["best_loss"], ckpt.get("epoch_loss", 0.0), saved_step=ckpt["step"])


def save_checkpoint(path, p, loop, cfg, parts, extra):
    """Every state the run needs to continue exactly, in a plain dict (weights_only loads it), written
    atomically by rank 0. parts: orig_model, objective, optimizer, scaler, aug_gen; extra: the run's
    facts (world, data_id, epoch, budget_planned). Called on every process: the augmentation streams
    are gathered, and nobody leaves (or is killed) while rank 0 writes."""
    states = distributed.gather(p, parts["aug_gen"].get_state())
    if p.master:
        save_atomic({"model": parts["orig_model"].state_dict(), "objective": parts["objective"].state_dict(),
                     "optimizer": parts["optimizer"].state_dict(), "scaler": parts["scaler"].state_dict(),
                     "step": loop.step, "best_loss": loop.best_loss, "epoch_loss": loop.epoch_loss, **extra,
                     "config": dataclasses.asdict(cfg),
                     "rng": {"torch": torch.get_rng_state(), "augment": [s.cpu() for s in states]}}, path)
    if path.name == "checkpoint.pt":
        loop.saved_step = loop.step
    distributed.barrier(p)


def metric_row(loop, steps_per_epoch, loss, lr, clips, wait, seconds):
    """One line of metrics.jsonl: the step's loss and lr, throughput and the share of time spent
    waiting for data since the last row."""
    return {"step": loop.step, "epoch": (loop.step - 1) // steps_per_epoch, "loss": loss, "lr": lr,
            "clips_per_s": clips / seconds, "data_wait": wait / seconds}


def main(argv=None):
    # ---- config: the preset and the flags (or the checkpoint's own on --resume), checked and saved
    t_start = time.time()                       # a time budget counts from here, cache build included
    args, given = parse_args(argv, __doc__)
    on_cpu = given.get("device") == "cpu" or not torch.cuda.is_available()
    memory = keep_freed_memory() if on_cpu else None   # ~1.7x on a CPU step (cpu_memory.py); before any timing
    notes = []
    cfg, ckpt = config_for_run(args, given, notes)
    out = Path(cfg.out)
    p = distributed.setup(cfg.device, cfg.dist_timeout)
    say = print if p.master else (lambda *a, **k: None)

    def write_config():                         # at the start, and again when a time budget sets max_steps
        if p.master:
            write_text_atomic(out / "config.json", json.dumps(dataclasses.asdict(cfg), indent=2))

    if p.master:
        start_folder(out, resumed=ckpt is not None)
    write_config()
    say(f"config ({'resumed' if ckpt else 'preset ' + args.preset}, {p.world} process(es)):\n"
        + json.dumps(dataclasses.asdict(cfg), indent=2))
    for note in notes + ([f"memory: {memory}"] if memory else []):
        say(note)

    # ---- data: an endless stream of pairs; augmentations on the device or in the workers
    torch.manual_seed(cfg.seed)
    chain = chain_for(cfg)
    views = 1 if cfg.objective in ("cpc", "masked") else 2     # CPC and masked learn from one chunk
    dataset = PairDataset(training_tracks(cfg, p), cfg.chunk_samples, seed=cfg.seed, verbose=p.master,
                          transform=chain if cfg.augment_on == "workers" else None, views=views)
    if len(dataset.tracks) < 2:
        raise SystemExit(f"{cfg.data}: {len(dataset.tracks)} usable track(s); pretraining needs at least 2 (the "
                         "other tracks are the negatives, or for masked the pool its codebook is fitted on)")
    data_id = hashlib.sha1(json.dumps([(t.path, t.length) for t in dataset.tracks]).encode()).hexdigest()
    global_batch = cfg.batch_size * p.world
    steps_per_epoch = max(1, len(dataset) // global_batch)     # an epoch: the data's chunks, once
    total_steps = cfg.max_steps or steps_per_epoch * cfg.epochs
    # A time budget measures max_steps once, on a new run (or a resume from before it had).
    budget = (TimeBudget(cfg.max_minutes, t_start, cap=cfg.max_steps)
              if cfg.max_minutes > 0 and not (ckpt and ckpt.get("budget_planned")) else None)
    aug_gen = torch.Generator(p.device).manual_seed(cfg.seed * 1000 + p.rank)

    # ---- model, objective, optimizer, precision
    orig_model = build_model(cfg.n_blocks, cfg.width, cfg.pool, cfg.proj_hidden, cfg.proj_dim, cfg.conv,
                             cfg.objective, context_of(dataclasses.asdict(cfg))).to(p.device)
    if cfg.sync_bn:                             # before the momentum copies and the optimizer are made
        orig_model = sync_bn.convert(orig_model, p.device.type)
        say("BatchNorm statistics over the global batch of " + (f"{p.world} processes" if p.world > 1 else
                                                                 "1 process (the same as without --sync_bn)"))
    objective = build_objective(cfg, orig_model).to(p.device)         # its queue / target / predictor
    if cfg.objective == "masked" and not ckpt:  # a resume reads the codebook from the objective's state
        install_codebook(cfg, p, objective, dataset.tracks, out)
    if cfg.sync_bn:
        objective = sync_bn.convert(objective, p.device.type)          # BYOL's predictor has a BatchNorm
    objective.generator = aug_gen               # what an objective draws (masked: its spans), resumed exactly
    optimizer = torch.optim.Adam([*orig_model.parameters(), *objective.trainable()], lr=cfg.lr,
                                 weight_decay=cfg.weight_decay)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[cfg.precision]
    ctx = nullcontext() if dtype == torch.float32 else torch.autocast(p.device.type, dtype=dtype)
    scaler = torch.amp.GradScaler(p.device.type, enabled=dtype == torch.float16)

    # ---- resume: every state from the checkpoint, so the run goes on bit for bit
    parts = {"orig_model": orig_model, "objective": objective, "optimizer": optimizer, "scaler": scaler,
             "aug_gen": aug_gen}
    loop = LoopState()
    if ckpt:
        loop = restore(ckpt, p, cfg, data_id, **parts, say=say)
        say(f"resumed from {out / 'checkpoint.pt'} at step {loop.step}")
        if p.master:
            trim_metrics(out / "metrics.jsonl", loop.step)
    # The kNN monitor (rank 0): the labeled tracks read once now, scored every monitor_every steps; the
    # others wait outside any collective that could time out, before the DDP wrap's first one.
    monitor = (distributed.rank0_first(p, lambda: KNNMonitor(cfg.monitor, cfg.sample_rate, cfg.chunk_samples,
                                                             device=p.device)) if cfg.monitor else None)
    model = torch.compile(orig_model) if cfg.compile else orig_model
    if p.world > 1:
        wrap = lambda m: DDP(m, device_ids=[p.device.index] if p.device.type == "cuda" else None)  # noqa: E731
        model = wrap(model)
        objective.distribute(wrap)
    n_params = sum(t.numel() for t in orig_model.encoder.parameters())
    say(f"{len(dataset.tracks)} tracks, {len(dataset)} chunks: an epoch is {steps_per_epoch} steps of "
        f"{global_batch} pairs; encoder {n_params:,} parameters; {cfg.precision} on {p.device}, conv {cfg.conv}")
    if len(dataset.tracks) < global_batch:
        say(f"note: {len(dataset.tracks)} tracks < batch {global_batch}: tracks repeat within a batch, and "
            "pairs of the same track are masked out of each other's negatives")
    # One DataLoader iterator for the whole run: workers prefetch straight across epoch ends.
    loader = DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                        sampler=StreamSampler(cfg.batch_size, loop.step, p.rank, p.world),
                        pin_memory=p.device.type == "cuda",
                        worker_init_fn=distributed.workers_ignore_stop_signals)   # stops are the loop's

    def checkpoint(path):                       # on every process; rank 0 writes
        planned = cfg.max_minutes > 0 and (budget is None or budget.planned is not None)
        save_checkpoint(path, p, loop, cfg, parts, {"epoch": loop.step // steps_per_epoch, "world": p.world,
                                                    "data_id": data_id, "budget_planned": planned})

    reading = {}

    def read_monitor():                         # -> its seconds, so the timings leave them out
        t = time.perf_counter()
        reading.update(monitor(orig_model.encoder, ctx))
        metrics.write(json.dumps({"step": loop.step, **reading}) + "\n")
        metrics.flush()
        seconds = time.perf_counter() - t
        say(f"\nmonitor at step {loop.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in reading.items())
            + f" ({seconds:.2f} s)")
        return seconds

    # ---- the loop: batch, augment, step, log, checkpoint
    stop = distributed.StopRequest()            # Ctrl-C / SIGTERM: finish the step, save it, leave
    metrics = open(out / "metrics.jsonl", "a") if p.master else None
    bar = tqdm(total=total_steps, initial=loop.step, disable=not p.master, unit="step",
               dynamic_ncols=True, mininterval=1 if sys.stderr.isatty() else 30)
    model.train(), objective.train()
    groups = 2 if cfg.bn_views == "separate" else 1                  # BatchNorm per view, as CLMR's two passes
    clean = False
    try:
        if monitor is not None and loop.step == 0:
            read_monitor()                      # the starting point: the random init
        t_log, wait, n_clips = time.perf_counter(), 0.0, 0
        t0 = time.perf_counter()
        for batch in loader:
            if loop.step >= total_steps:
                break
            wait += time.perf_counter() - t0
            x, ids = on_device(batch, p.device)                        # (2N, 1, T), (N,)
            if cfg.augment_on == "device":
                x = chain(x, generator=aug_gen)                        # each clip its own effects
            lr = get_lr(loop.step, cfg)
            loss = train_step(model, objective, optimizer, scaler, ctx, x, ids, lr, loop.step / total_steps, groups)
            loss_value, stopping, out_of_time = distributed.agree(p, loss.float().item(), stop.requested,
                                                                  budget is not None and budget.expired())
            if not math.isfinite(loss_value):
                kept = (f"{out / 'checkpoint.pt'} (step {loop.saved_step}) is untouched" if loop.saved_step
                        is not None else "no checkpoint had been written yet")
                say(f"\nnon-finite loss ({loss_value}) at step {loop.step}: stopping; {kept}.")
                raise SystemExit(2)
            loop.step += 1
            n_clips += views * global_batch
            loop.epoch_loss += loss_value
            if p.master and loop.step % cfg.log_every == 0:
                row = metric_row(loop, steps_per_epoch, loss_value, lr, n_clips, wait, time.perf_counter() - t_log)
                metrics.write(json.dumps(row) + "\n")
                metrics.flush()
                t_log, wait, n_clips = time.perf_counter(), 0.0, 0
            if monitor is not None and loop.step % cfg.monitor_every == 0:
                t_log += read_monitor()         # clips/s and data wait leave the monitor out
            bar.update(1)
            if budget is not None and (planned := budget.tick(loop.step)) is not None:
                cfg.max_steps = total_steps = distributed.broadcast(p, planned)   # rank 0's measurement
                bar.total = total_steps
                say("\n" + budget.report(loop.step))
                write_config()
            rate = bar.format_dict["rate"]                   # steps/s, smoothed by tqdm
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}",
                            clips_s=f"{views * global_batch * rate:.0f}" if rate else "-",
                            **{k: f"{v:.3f}" for k, v in reading.items()}, refresh=False)
            if loop.step % steps_per_epoch == 0:    # a whole epoch: best.pt compares whole epochs only
                if loop.epoch_loss / steps_per_epoch < loop.best_loss:
                    loop.best_loss = loop.epoch_loss / steps_per_epoch
                    checkpoint(out / "best.pt")
                loop.epoch_loss = 0.0
            if stopping:                            # a whole step is done: save exactly step `step`
                checkpoint(out / "checkpoint.pt")
                say(f"\ninterrupted: saved {out / 'checkpoint.pt'} at step {loop.step}; continue with --resume")
                raise SystemExit(130)
            if (loop.step % cfg.ckpt_every == 0 or loop.step % steps_per_epoch == 0 or loop.step >= total_steps
                    or out_of_time):
                checkpoint(out / "checkpoint.pt")
            if out_of_time and loop.step < total_steps:
                why = ("before the step time was measured" if budget.planned is None else
                       f"of the {total_steps} planned (the machine ran slower than measured)")
                say(f"\ntime budget of {cfg.max_minutes:g} min spent at step {loop.step}, {why}: stopped early, "
                    f"the schedule not at its end; saved {out / 'checkpoint.pt'}")
                break
            if loop.step >= total_steps:
                break
            t0 = time.perf_counter()
        clean = True
    finally:
        stop.restore()
        bar.close()
        if metrics:
            metrics.close()
        distributed.finish(p, clean)
    best = (f"best {out / 'best.pt'} (epoch-mean loss {loop.best_loss:.4f})" if math.isfinite(loop.best_loss) else
            f"no best.pt: the run was shorter than one epoch ({steps_per_epoch} steps)")
    say(f"done: {loop.step} steps ({loop.step / steps_per_epoch:.1f} epochs); last {out / 'checkpoint.pt'}, {best}")


if __name__ == "__main__":
    distributed.run_script(main)      # under torchrun: leaves by os._exit (see there why)

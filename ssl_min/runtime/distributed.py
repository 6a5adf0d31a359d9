"""Processes and stopping: one process or many under torchrun, and how they stop together.

    setup(device)   torchrun's WORLD_SIZE / RANK / LOCAL_RANK -> Processes(world, rank, device, master);
                    gloo on CPUs, NCCL on GPUs; one process when WORLD_SIZE is unset
    rank0_first(p, work) work() on rank 0 while the others wait, in no collective that can time out
    agree(p, loss, stop) -> (mean loss over processes, whether any process asked to stop): one
                    all-reduce per step carries both, so every rank stops at the same step boundary
                    (a rank that stopped alone would wait in a collective the others never join)
    StopRequest     SIGINT / SIGTERM set a flag; the loop reads it between steps
    workers_ignore_stop_signals   a DataLoader's worker_init_fn: the main process stops its workers
    run_script(main) a script's entry point: main() as is alone; under torchrun, leave with os._exit
"""
import os
import signal
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass
class Processes:
    world: int
    rank: int
    device: torch.device

    @property
    def master(self):
        return self.rank == 0


def setup(device_type, timeout_s=0.0):
    """device_type: 'cpu' or 'cuda' (already resolved) -> Processes; joins torchrun's group.
    timeout_s: how long a collective may wait before the run fails (0: torch's default)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank, local_rank = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    if world > 1:
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo",
                                timeout=timedelta(seconds=timeout_s) if timeout_s > 0 else None)
    device = torch.device(f"cuda:{local_rank}" if device_type == "cuda" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return Processes(world, rank, device)


def agree(p, loss, *flags):
    """-> (loss averaged over processes: float, then for each flag: did any process raise it)."""
    reduced = torch.tensor([loss, *map(float, flags)], device=p.device)
    if p.world > 1:
        dist.all_reduce(reduced)
    return (reduced[0].item() / p.world, *(v > 0 for v in reduced[1:].tolist()))


def rank0_first(p, work, patience=timedelta(days=365)):
    """-> work() on rank 0 (None on the others), every process leaving together once it is done.

    Why not a barrier of the default group: its collectives time out (NCCL 10 min, gloo 30, or
    --dist_timeout), and rank 0's work may be a cache build of hours. The others wait instead in a
    barrier of a gloo group of their own, made for this wait with a timeout of `patience`; no
    collective of the default group is pending meanwhile, so its timeout keeps guarding the steps."""
    if p.world == 1:
        return work()
    group = dist.new_group(backend="gloo", timeout=patience)      # every rank makes it, at once
    try:
        result = work() if p.master else None
    finally:
        dist.barrier(group=group)
        dist.destroy_process_group(group)
    return result


def broadcast(p, obj):
    """Rank 0's `obj` on every process."""
    if p.world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(p, obj):
    """[obj of rank 0, obj of rank 1, ...] on every process."""
    if p.world == 1:
        return [obj]
    out = [None] * p.world
    dist.all_gather_object(out, obj)
    return out


def barrier(p):
    if p.world > 1:
        dist.barrier()


def finish(p, clean):
    """Leave the process group; after a clean run, together (no rank tears down its sockets while a
    peer is still in a collective). The process's own exit is run_script's business."""
    if p.world > 1 and dist.is_initialized():
        if clean:
            barrier(p)
        dist.destroy_process_group()


def run_script(main):
    """Call main(); in a process of a torchrun group, then leave by os._exit with main's exit status.

    Why: Python's shutdown races gloo. A gloo worker thread frees a finished collective *after*
    the wait on it returned, and with it tensors that Python created (all_gather_object's, the
    loss's all-reduce); freeing those takes the GIL. If the main thread has by then begun to
    finalize the interpreter, taking the GIL ends the worker thread, C++ calls std::terminate, and
    a finished, saved run dies with SIGABRT ('terminate called without an active exception'). Seen
    about once in 60 two-process runs even after the barrier in finish(); the core dump's stack:
    ProcessGroupGloo::runLoop -> ~AsyncBarrierWork -> ~AsyncAllgatherWork ->
    TensorImpl::decref_pyobject -> take_gil -> pthread_exit (an open PyTorch issue, #190489).
    os._exit skips the finalization: by then the checkpoint is written (atomically), the metrics
    file is closed and the group destroyed; only stdout and stderr need flushing. SystemExit keeps
    its meaning (None: 0, an int: itself, a message: printed to stderr, status 1); any other
    exception propagates as usual, with its traceback."""
    if int(os.environ.get("WORLD_SIZE", 1)) == 1:
        return main()
    try:
        main()
        code = 0
    except SystemExit as e:
        code = 0 if e.code is None else e.code
        if not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class StopRequest:
    """SIGINT and SIGTERM only set a flag; the loop reads it at a step boundary and saves there.

    Why not Python's KeyboardInterrupt: (1) a child started from a non-interactive shell with `&`,
    or by a parent that ignores SIGINT, inherits SIGINT *ignored*, and Python then installs no
    KeyboardInterrupt handler at all: Ctrl-C would do nothing. Installing our own handler makes
    the signal work whatever the inherited disposition. (2) An exception can land between the
    optimizer step and `step += 1`, saving update s+1 labelled as step s; a flag read between
    steps cannot. A second signal changes nothing (torchrun's agent forwards a Ctrl-C that the
    workers already got); to leave at once, send SIGQUIT (Ctrl-\) or SIGKILL."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def _handle(self, signum, frame):
        self.requested = True      # repeated signals too: torchrun forwards the terminal's Ctrl-C again

    def restore(self):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def workers_ignore_stop_signals(worker_id):
    """worker_init_fn for the training DataLoader. A signal sent to the whole process group (Ctrl-C
    in a terminal, `kill -TERM -PGID`, a scheduler, `docker stop`) reaches the workers too: SIGTERM
    kills a worker outright (PyTorch's worker handler), and the main process's SIGCHLD handler then
    raises 'DataLoader worker ... is killed by signal' in the middle of a step, before StopRequest
    can save it. Ignoring both here leaves the stop to the main process, which finishes the step,
    saves, and shuts its workers down the usual way (a message on their queue). A worker whose
    parent dies without that (SIGKILL) still leaves: PyTorch's worker watchdog checks the parent."""
    for s in StopRequest.SIGNALS:
        signal.signal(s, signal.SIG_IGN)

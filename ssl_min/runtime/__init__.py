"""The run's machinery: files a kill cannot half-write, processes and how they stop together, a time
budget, and the measured choices of how to compute (precision, formulation, allocator).

    atomic.py        write to a temporary name, then rename; metrics trimmed to a checkpoint
    distributed.py   torchrun's processes, one all-reduce per step, StopRequest (Ctrl-C, SIGTERM)
    budget.py        --max_minutes: the steps that fit, measured
    precision.py     --precision auto: bf16 only where native and measured faster
    formulation.py   --conv auto: CLMR's module stack or the fast one, measured
    remembered.py    a measured choice written down per machine: the same command, the same numbers
    cpu_memory.py    glibc's allocator told to keep freed memory (a CPU step's big activations)
    sync_bn.py       --sync_bn: BatchNorm statistics over every process's batch
"""
from ssl_min.runtime.atomic import atomic_write, save_atomic, trim_metrics, write_text_atomic
from ssl_min.runtime.budget import TimeBudget
from ssl_min.runtime.cpu_memory import keep_freed_memory
from ssl_min.runtime.distributed import StopRequest
from ssl_min.runtime.formulation import choose_conv, resolve_conv
from ssl_min.runtime.precision import auto_precision, native_bf16

__all__ = ["atomic_write", "save_atomic", "trim_metrics", "write_text_atomic", "TimeBudget", "keep_freed_memory",
           "StopRequest", "choose_conv", "resolve_conv", "auto_precision", "native_bf16"]

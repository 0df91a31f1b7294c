"""What every trainer does around its loop: threads and seeds, the run directory's logs on resume
(a torn last line repaired, lines after the checkpoint dropped), and the configured metric loggers."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

import torch

from aha import runs
from aha.config import to_dict
from aha.events import Events


def usable_cores() -> int:
    # The cores this process may run on (a container or taskset may allow fewer than the machine
    # has); macOS has no sched_getaffinity.
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def seed_and_threads(run_cfg) -> None:
    # Processes launched together on one machine (torchrun sets LOCAL_WORLD_SIZE) split its cores.
    local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(run_cfg.threads or max(1, usable_cores() // local_procs))
    torch.manual_seed(run_cfg.seed)
    settle_heap()


HEAP_ENV = "AHA_HEAP"  # "keep" (the default) or "glibc" (leave the allocator's own policy)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
KEEP_TRIM_THRESHOLD = 1 << 30
KEEP_MMAP_THRESHOLD = 32 << 20  # glibc's own ceiling for its dynamic threshold on 64-bit


def settle_heap() -> bool:
    """Keep freed heap memory for the next step's tensors instead of handing it back to the OS at
    unpredictable moments (`AHA_HEAP=glibc` leaves glibc's policy). Returns whether it was set.

    Why: a step allocates and frees hundreds of MB of activations. glibc serves them from the heap
    (its mmap threshold rises to the largest block freed) and returns the top of the heap to the OS
    whenever the free space there exceeds a threshold, which depends on which small live objects
    happen to sit near the top when the step ends. So RSS jumped by up to 200 MB from step to step
    over a steady 135 MB of live heap (the soak's ±7 %). With trimming off and the threshold at its
    ceiling from the start, RSS rises to the run's high-water mark during warm-up and stays there;
    freed pages are reused without new page faults. (Giving every buffer of 1 MB or more its own
    mapping held RSS steady too, and 250 MB lower, but made a demo step ≈ 1.7× slower: every such
    buffer is faulted in afresh.) Allocation placement never changes a result. glibc only."""
    name = ctypes.util.find_library("c")
    if os.environ.get(HEAP_ENV, "keep") != "keep" or name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt; macOS's libc differs)
        return False
    return mallopt(_M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD) == 1 and mallopt(_M_MMAP_THRESHOLD, KEEP_MMAP_THRESHOLD) == 1


def with_loggers(events: Events, run_cfg, run_dir: Path, cfg) -> Events:
    """`events` plus the loggers named in `run.log_to` (TensorBoard, W&B)."""
    from aha.observe.loggers import make_loggers

    loggers = make_loggers(run_cfg.log_to, run_dir, to_dict(cfg))
    return Events([*events.listeners, *loggers], events.stage) if loggers else events


def rewind_logs(run_dir: Path, step: int, events: Events, names=("metrics.jsonl", "samples.jsonl")) -> None:
    """Make the logs end at the checkpoint's step, so the resumed run's logs equal an uninterrupted
    run's; a line torn by a kill mid-write is dropped with a warning."""
    for name in names:
        path = run_dir / name
        if runs.repair_jsonl(path):
            events.warning(f"{path}: dropped a torn last line (the run was killed while writing it)")
        runs.truncate_jsonl(path, step)

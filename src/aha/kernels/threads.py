"""How many threads a decode step should use right now.

A decode step is many short parallel regions (the fused kernel's per-layer loops, oneDNN's
matmuls), each ending at a barrier. With as many threads as cores and another busy process on the
machine, one of our threads is regularly descheduled and the others spin at the barrier until the
scheduler gives it back a slice: on 2 cores with one `while True: pass` beside it, a rollout went
from 4.7 s to 63 s. libgomp's wait policy (OMP_WAIT_POLICY, GOMP_SPINCOUNT) is read once when torch
loads it, so it cannot be changed from here; the thread count can, per step.

`ThreadBudget` therefore gives each step the CPUs this process may run on (its affinity mask and
cgroup CPU quota, capped by torch's own setting: OMP_NUM_THREADS, `torch.set_num_threads`) minus
what other processes kept busy on those CPUs over the last half second, read from /proc/stat.
Where /proc/stat is missing (not Linux) the budget is simply the cap. `TorchEngine.generate` holds
the budget for a whole CPU rollout (sampling ops run many small regions too) and the lean decoder
re-decides it each step; torch's thread count is restored when the rollout ends.

With sleeping waits (OMP_WAIT_POLICY=PASSIVE, which a user may set) the stall is
gone at the source and the budget keeps every allowed thread; it matters when torch was loaded
first with libgomp's spinning default.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Iterator

import torch

# Seconds between two readings of /proc/stat: long enough to average over scheduler slices
# (~3 ms) and many decode steps, short enough to follow a competing job that starts or stops.
WINDOW_S = 0.5
# A thread is worth adding only for a nearly free core: a thread that shares its core stalls
# every barrier of the step (the measured 13x slowdown), while one thread fewer costs at most 1/n.
MIN_FREE_PER_THREAD = 0.75
# False: every step uses torch's thread count, as before (for benchmarks comparing the two).
ADAPTIVE = True


def spinning_waits(env=os.environ) -> bool:
    """Whether OpenMP threads spin at barriers (libgomp's default) rather than sleep. Read from the
    environment (PASSIVE if the user set it): with sleeping waits a thread
    fewer gains nothing (measured: 2 threads as fast or faster than 1 beside a busy process), so
    the budget only cuts threads when they spin."""
    return env.get("OMP_WAIT_POLICY", "").strip().upper() != "PASSIVE" and env.get("GOMP_SPINCOUNT", "").strip() != "0"


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (all of them where affinity is not reported)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def quota_cores(cpu_max: str) -> int | None:
    """Whole cores a cgroup v2 CPU quota allows (`cpu.max`: "200000 100000" → 2, "150000 100000" → 2,
    "max 100000" → None). A container limited to 2 cores on a 64-core host otherwise gets 64
    threads from torch, each running a fraction of the time: the barrier stalls again.

    >>> quota_cores("200000 100000"), quota_cores("50000 100000"), quota_cores("max 100000")
    (2, 1, None)
    """
    fields = cpu_max.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    quota, period = int(fields[0]), int(fields[1])
    return max(1, -(-quota // period)) if period > 0 else None


def _cgroup_quota() -> int | None:
    try:
        return quota_cores(Path("/sys/fs/cgroup/cpu.max").read_text())
    except (OSError, ValueError):
        return None


def busy_seconds(proc_stat: str, cpus: list[int]) -> float | None:
    """CPU-seconds spent busy (not idle, not waiting for I/O) on `cpus` since boot, from the text
    of /proc/stat; None when a CPU has no line (the numbering is not the host's)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    wanted, total = {f"cpu{c}" for c in cpus}, 0
    for line in proc_stat.splitlines():
        fields = line.split()
        if fields and fields[0] in wanted:
            wanted.discard(fields[0])
            values = [int(v) for v in fields[1:]]
            # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
            total += sum(values[:8]) - values[3] - values[4]
    return None if wanted else total / ticks


def threads_for(cap: int, cpus: int, others_busy_cores: float) -> int:
    """Threads for a step: one per CPU that other processes left (nearly) free, within [1, cap].

    >>> threads_for(2, 2, 0.0), threads_for(2, 2, 0.9), threads_for(8, 16, 3.0)
    (2, 1, 8)
    """
    free = cpus - max(0.0, others_busy_cores)
    return max(1, min(cap, int(free + 1.0 - MIN_FREE_PER_THREAD)))


class ThreadBudget:
    """`with budget.applied(): …` runs the block with the current budget of threads and restores
    torch's thread count afterwards (so nothing outside the decode sees a change). One budget
    serves the whole process (`shared_budget`): what it learnt carries over from one rollout to
    the next."""

    def __init__(self):
        self.cpus = allowed_cpus()
        self.limit = min(len(self.cpus), _cgroup_quota() or len(self.cpus))  # cores we may use at all
        self.others = 0.0  # cores that other processes kept busy on our CPUs, over the last window
        self.spinning = spinning_waits()
        self.clock = time.monotonic
        self._last = self._reading()
        self._local = threading.local()  # each calling thread's nesting depth and cap

    def _reading(self) -> tuple[float, float, float] | None:
        """(wall, this process's CPU time, busy time on our CPUs), or None without /proc/stat."""
        try:
            with open("/proc/stat") as f:
                busy = busy_seconds(f.read(), self.cpus)
        except OSError:
            return None
        return None if busy is None else (self.clock(), time.process_time(), busy)

    def update(self) -> float:
        """Other processes' load, re-measured at most once per WINDOW_S over the time since the last."""
        if self._last is None or self.clock() - self._last[0] < WINDOW_S:
            return self.others
        now = self._reading()
        if now is not None:
            wall, own, busy = (now[i] - self._last[i] for i in range(3))
            self.others = max(0.0, busy - own) / wall
            self._last = now
        return self.others

    def threads(self, cap: int) -> int:
        cap = min(cap, self.limit)
        if not ADAPTIVE or cap <= 1 or not self.spinning:
            return max(1, cap)
        return threads_for(cap, len(self.cpus), self.update())

    @contextlib.contextmanager
    def applied(self) -> Iterator[int]:
        """Reentrant: the outermost block (a whole rollout) records torch's thread count as the cap
        and restores it at the end; inner blocks (each decode step) re-decide within that cap, so a
        neighbour that starts or stops mid-rollout is followed at the next window."""
        state = self._local
        outermost = not getattr(state, "depth", 0)
        if outermost:
            state.cap = torch.get_num_threads()
        state.depth = getattr(state, "depth", 0) + 1
        threads = self.threads(state.cap)
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        try:
            yield threads
        finally:
            state.depth -= 1
            if outermost and torch.get_num_threads() != state.cap:
                torch.set_num_threads(state.cap)


_BUDGET: list[ThreadBudget] = []


def shared_budget() -> ThreadBudget:
    if not _BUDGET:
        _BUDGET.append(ThreadBudget())
    return _BUDGET[0]

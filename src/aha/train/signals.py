"""A graceful stop on SIGTERM and SIGINT: what `kill`, systemd, Kubernetes and SLURM send before
they preempt, and Ctrl-C. The first signal only sets a flag; the trainer finishes the step it is
in, writes a checkpoint and raises `StopRequested`. A second signal stops at once (the default
action), for a user who does not want to wait."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class StopRequested(Exception):
    def __init__(self, signum: int, step: int, checkpoint):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint {checkpoint}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class StopFlag:
    def __init__(self):
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None


@contextmanager
def graceful_stop(signals=(signal.SIGINT, signal.SIGTERM)):
    """Yields a StopFlag set by the first of `signals`. Off the main thread (where Python cannot
    install handlers) it yields a flag that never sets, and signals keep their usual effect."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        flag.signum = signum
        for s in signals:  # the next one acts at once
            signal.signal(s, previous[s])

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield flag
    finally:
        for s in signals:
            signal.signal(s, previous[s])

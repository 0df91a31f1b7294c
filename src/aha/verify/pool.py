"""A process pool whose every call is bounded in wall-clock time, from any thread or process.

Why not math-verify's own timeouts: they use `signal.alarm`, which only works on the main thread
of the main interpreter (Math-Verify issues #50/#55, trl PR #5281); a reward computed in a
data-loader thread or an async rollout worker then either raises or hangs. And why not
`concurrent.futures.ProcessPoolExecutor`: a future's `result(timeout=)` gives up waiting but
leaves the stuck worker running (a `10^10^10^10` keeps a core busy forever), and the executor
cannot kill one worker without breaking the whole pool.

So each worker is a process with its own pipe. A call checks out an idle worker, sends the job,
and polls the pipe until the deadline; on timeout or crash the worker is SIGKILLed and replaced
lazily by the next call. Workers are also recycled after `recycle_after` jobs (sympy caches grow)
and run under an address-space limit, so a memory bomb raises MemoryError inside the worker
instead of swapping the machine.

Workers are forked by a small server of aha's own (`aha.verify._worker`, started as a plain
subprocess), never by multiprocessing: its spawn and forkserver methods re-run the caller's
`__main__` in each new process, so an unguarded script that calls the judge at top level would
start the pool again inside its own worker and score every correct answer 0 ("worker died").
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from aha.verify._worker import recv_message, send_message

# The directory holding the `aha` package, put first on the server's path before anything else is
# imported (the caller's full sys.path follows in the "init" message).
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_BOOT = "import sys; sys.path.insert(0, {root!r}); from aha.verify._worker import main; main({fd})"
_CONTROL_TIMEOUT_S = 300.0  # preloading sympy takes ~1 s; only a wedged server takes this long


@dataclass(frozen=True)
class CallResult:
    ok: bool  # the function returned (False: timeout, crash or exception)
    value: Any  # its return value when ok
    reason: str  # "" when ok, else "timeout after 1.0 s", "worker died (exit -9)", "ValueError: …"
    seconds: float


class _Server:
    """The pool's handle on its fork server (`aha.verify._worker`). Requests are serialised."""

    def __init__(self, preload: Sequence[str], memory_limit_bytes: int | None):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        boot = _BOOT.format(root=_PACKAGE_ROOT, fd=theirs.fileno())
        self.process = subprocess.Popen([sys.executable, "-c", boot], pass_fds=[theirs.fileno()],
                                        stdin=subprocess.DEVNULL)
        theirs.close()
        ours.settimeout(_CONTROL_TIMEOUT_S)
        self.control = ours
        self.owner = os.getpid()  # a forked copy of the pool's process must start its own server
        self.lock = threading.Lock()
        self.broken = False
        try:
            reply, _ = self.request(("init", list(sys.path), list(preload), memory_limit_bytes))
        except OSError as error:  # it could not even import aha, or hung: no process left behind
            self.close()
            raise RuntimeError(f"verifier worker server failed to start: {error}") from error
        if reply[0] != "ready":
            self.close()
            raise RuntimeError(f"verifier worker server failed to start: {reply[1]}")

    def usable(self) -> bool:
        return not self.broken and self.owner == os.getpid() and self.process.poll() is None

    def request(self, message: tuple) -> tuple[tuple, list[int]]:
        with self.lock:
            try:
                send_message(self.control, message)
                received = recv_message(self.control)
            except (OSError, EOFError) as error:
                self.broken = True
                raise ConnectionError(f"verifier worker server: {error}") from error
            if received is None:
                self.broken = True
                raise ConnectionError("verifier worker server exited")
            return received

    def spawn(self) -> tuple[int, Connection]:
        reply, fds = self.request(("spawn", list(sys.path)))
        return reply[1], Connection(fds[0])

    def kill(self, pid: int) -> int | None:
        """SIGKILL a worker (the server signals only children it has not reaped, so never a reused
        pid); its exit code, -signal when signalled, None when the server is gone (and with it,
        by PDEATHSIG, the worker)."""
        try:
            return self.request(("kill", pid))[0][1]
        except OSError:
            return None

    def close(self) -> None:
        self.control.close()  # the server exits on EOF; its children die with it
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


class _Worker:
    def __init__(self, server: _Server):
        self.server = server
        self.pid, self.conn = server.spawn()
        self.jobs = 0

    def idle_and_alive(self) -> bool:
        # An idle worker has nothing to say: a readable pipe means EOF, i.e. it died while idle.
        return self.server.usable() and not self.conn.poll(0)

    def kill(self) -> int | None:
        self.conn.close()
        return self.server.kill(self.pid)

    def retire(self) -> None:
        """Close the pipe of a healthy idle worker: it exits by itself and the server reaps it."""
        self.conn.close()


class BoundedPool:
    """`call(fn, *args, timeout=1.0)` runs `fn(*args)` in a worker and never takes much longer
    than `timeout` seconds (plus process start-up the first time a slot is used).

    `fn` must be a picklable module-level function of an importable module (not the caller's
    `__main__`: workers never import it). `preload` names modules the fork server imports once, so
    new workers start warm (sympy takes ~1 s to import, a fork ~10 ms).
    """

    def __init__(
        self,
        max_workers: int | None = None,
        recycle_after: int = 2000,
        memory_limit_mb: int | None = 2048,
        preload: Sequence[str] = (),
    ):
        self.max_workers = max_workers or max(1, min(4, os.cpu_count() or 1))
        self.recycle_after = recycle_after
        self.memory_limit_bytes = memory_limit_mb * 2**20 if memory_limit_mb else None
        # Workers fork from a fresh single-threaded server, never from this process: it may hold
        # torch threads and locks that a plain fork would copy in a locked state.
        self.preload = list(preload)
        self._server: _Server | None = None
        self._server_lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._slots = threading.BoundedSemaphore(self.max_workers)
        self._lock = threading.Lock()
        self._closed = False
        self.restarts = 0  # workers killed for a timeout or crash (for tests and logs)

    def _checkout(self) -> _Worker:
        self._slots.acquire()
        with self._lock:
            if self._closed:
                self._slots.release()
                raise RuntimeError("pool is closed")
            worker = self._idle.pop() if self._idle else None
        if worker is None or not worker.idle_and_alive():
            if worker is not None:
                worker.kill()
            try:
                worker = self._new_worker()
            except BaseException:
                self._slots.release()
                raise
        return worker

    def _new_worker(self) -> _Worker:
        try:
            return _Worker(self._live_server())
        except OSError:  # the server died since it was last used: one fresh server, one retry
            return _Worker(self._live_server())

    def _live_server(self) -> _Server:
        """The fork server, (re)started when missing, dead, or inherited through a fork."""
        with self._server_lock:
            if self._server is None or not self._server.usable():
                if self._server is not None and self._server.owner == os.getpid():
                    self._server.close()
                self._server = _Server(self.preload, self.memory_limit_bytes)
            return self._server

    def _checkin(self, worker: _Worker | None) -> None:
        with self._lock:
            if worker is not None and not self._closed:
                self._idle.append(worker)
                worker = None
        if worker is not None:
            worker.kill()
        self._slots.release()

    def call(self, fn: Callable, *args: Any, timeout: float = 1.0) -> CallResult:
        worker = self._checkout()
        start = time.monotonic()
        try:
            worker.conn.send((fn, args))
            if worker.conn.poll(timeout):
                status, value = worker.conn.recv()
            else:
                status, value = "timeout", None
        except (EOFError, OSError, BrokenPipeError):
            status, value = "died", None
        seconds = time.monotonic() - start
        if status in ("timeout", "died"):
            code = worker.kill()
            reason = f"timeout after {timeout:g} s" if status == "timeout" else f"worker died (exit {code})"
            self.restarts += 1
            self._checkin(None)
            return CallResult(False, None, reason, seconds)
        worker.jobs += 1
        keep = worker.jobs < self.recycle_after
        if not keep:
            worker.retire()
        self._checkin(worker if keep else None)
        if status == "ok":
            return CallResult(True, value, "", seconds)
        return CallResult(False, None, value, seconds)

    def map(self, fn: Callable, arg_tuples: Iterable[tuple], timeout: float = 1.0) -> list[CallResult]:
        """Calls in parallel over the workers; results in input order."""
        jobs = list(arg_tuples)
        if len(jobs) <= 1:
            return [self.call(fn, *args, timeout=timeout) for args in jobs]
        with ThreadPoolExecutor(max_workers=self.max_workers) as threads:
            return list(threads.map(lambda args: self.call(fn, *args, timeout=timeout), jobs))

    def warm(self) -> None:
        """Start every worker now (e.g. before timing-sensitive work)."""
        results = self.map(_noop, [() for _ in range(self.max_workers)], timeout=60)
        bad = [r.reason for r in results if not r.ok]
        if bad:
            raise RuntimeError(f"pool workers failed to start: {bad[0]}")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.retire()
        with self._server_lock:
            server, self._server = self._server, None
        if server is not None and server.owner == os.getpid():
            server.close()  # workers still busy in other threads die with it (PDEATHSIG)


def _noop() -> None:
    return None


_SHARED: dict[str, BoundedPool] = {}
_SHARED_LOCK = threading.Lock()


def shared_pool(name: str, **options: Any) -> BoundedPool:
    """One long-lived pool per name per process, so warm workers are reused across calls."""
    with _SHARED_LOCK:
        pool = _SHARED.get(name)
        if pool is None or pool._closed:
            pool = _SHARED[name] = BoundedPool(**options)
        return pool


@atexit.register
def _close_shared() -> None:
    for pool in list(_SHARED.values()):
        pool.close()

"""The process side of `BoundedPool`: a small fork server ("zygote") and the job loop its children run.

Why not multiprocessing's forkserver or spawn: both re-run the user's `__main__` in the new
process (that is how they find functions defined there). A plain script that calls the judge at
top level, without `if __name__ == "__main__":`, then starts the pool again from inside its own
worker, which dies, and a correct answer scores 0 ("worker died").

So the pool starts this module as an ordinary subprocess (`python -c` importing only aha), which
never sees the caller's main module. It imports the preload modules once (sympy, math-verify: ~1 s)
and then forks one child per worker on request (~10 ms), handing the parent one end of a fresh
socket pair over the control socket (SCM_RIGHTS). Children only ever run module-level functions
that the parent names by module and qualified name (pickle), importable from the parent's sys.path.

Control protocol (pickled tuples, each framed by its length on a Unix stream socket — SOCK_SEQPACKET
would be simpler but macOS has none; the parent serialises requests, so frames never interleave):
    ("init", sys_path, preload, memory_limit_bytes) -> ("ready",) | ("error", text)
    ("spawn", sys_path)                             -> ("spawned", pid) + the job socket's fd
    ("kill", pid)                                   -> ("killed", exit code: -signal when signalled)
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import socket
import struct
import sys
from multiprocessing.connection import Connection

_HEADER = struct.Struct("!I")


def send_message(sock: socket.socket, message: tuple, fds: list[int] | None = None) -> None:
    data = pickle.dumps(message)
    frame = _HEADER.pack(len(data)) + data
    if fds:  # the descriptors ride on the frame's first bytes; replies carrying them are tiny
        sent = socket.send_fds(sock, [frame], fds)
        sock.sendall(frame[sent:])
    else:
        sock.sendall(frame)


def _exactly(sock: socket.socket, n: int, head: bytes = b"") -> bytes:
    out = bytearray(head)
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError("control socket closed mid-message")
        out += chunk
    return bytes(out)


def recv_message(sock: socket.socket) -> tuple[tuple, list[int]] | None:
    """One framed message and the descriptors sent with it; None at a clean end of stream.
    Reads exactly one frame, never into the next."""
    head, fds, _, _ = socket.recv_fds(sock, _HEADER.size, 1)
    if not head:
        return None
    (length,) = _HEADER.unpack(_exactly(sock, _HEADER.size, head))
    return pickle.loads(_exactly(sock, length)), list(fds)


def serve_jobs(conn: Connection, memory_limit_bytes: int | None) -> None:
    """Serve jobs from the pipe until it closes. Exceptions are sent back as text, never raised,
    so one bad input costs one answer, not a respawn."""
    if memory_limit_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    while True:
        try:
            fn, args = conn.recv()
        except EOFError:
            return
        except Exception as exc:  # noqa: BLE001 — e.g. the function's module is not importable here
            conn.send(("error", f"{type(exc).__name__}: {str(exc)[:200]}"))
            continue
        try:
            reply = ("ok", fn(*args))
        except MemoryError:
            reply = ("error", "MemoryError")
        except Exception as exc:  # noqa: BLE001 — the job is untrusted input; report, don't die
            reply = ("error", f"{type(exc).__name__}: {str(exc)[:200]}")
        conn.send(reply)


def _die_with_parent() -> None:
    """Linux: the kernel SIGKILLs this child when the zygote exits (the zygote exits when the pool's
    process closes its end or dies), so a worker stuck in sympy never outlives the run."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the worker still exits on EOF once its current job ends


class _Zygote:
    def __init__(self, control: socket.socket):
        self.control = control
        self.memory_limit_bytes: int | None = None
        self.live: set[int] = set()
        self.exited: dict[int, int] = {}  # reaped children's exit codes, until the parent asks

    def reply(self, message: tuple, fds: list[int] | None = None) -> None:
        send_message(self.control, message, fds)

    def reap(self) -> None:
        """Collect children that exited on their own (recycled workers exit when their pipe closes)."""
        for pid in list(self.live):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                self.live.discard(pid)
                self.exited[pid] = os.waitstatus_to_exitcode(status)
        if len(self.exited) > 4096:  # codes nobody asked for (recycled workers): keep memory flat
            self.exited.clear()

    def spawn(self, sys_path: list[str]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            try:
                self.control.close()
                ours.close()
                _die_with_parent()
                sys.path[:] = sys_path
                serve_jobs(Connection(theirs.detach()), self.memory_limit_bytes)
            finally:
                os._exit(0)
        theirs.close()
        self.live.add(pid)
        self.exited.pop(pid, None)  # a reused pid: the old code belongs to another child
        self.reply(("spawned", pid), [ours.fileno()])
        ours.close()

    def kill(self, pid: int) -> None:
        code = self.exited.pop(pid, None)
        if pid in self.live:  # not reaped yet, so the pid is still this child's: safe to signal
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            self.live.discard(pid)
        self.reply(("killed", code))

    def run(self) -> None:
        while True:
            received = recv_message(self.control)
            if received is None:  # the pool's process closed its end or died
                return
            self.reap()
            request = received[0]
            if request[0] == "init":
                self.init(*request[1:])
            elif request[0] == "spawn":
                self.spawn(request[1])
            elif request[0] == "kill":
                self.kill(request[1])

    def init(self, sys_path: list[str], preload: list[str], memory_limit_bytes: int | None) -> None:
        sys.path[:] = sys_path
        self.memory_limit_bytes = memory_limit_bytes
        try:
            for name in preload:
                importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 — reported to the pool, which raises it there
            self.reply(("error", f"preloading {name}: {type(exc).__name__}: {str(exc)[:300]}"))
            return
        self.reply(("ready",))


def main(control_fd: int) -> None:
    # Ctrl-C reaches the whole process group: the pool's process handles it and closes us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    control = socket.socket(fileno=control_fd)
    try:
        _Zygote(control).run()
    except (ConnectionError, EOFError):
        pass  # the pool's process went away mid-request
    finally:
        control.close()


if __name__ == "__main__":
    main(int(sys.argv[1]))

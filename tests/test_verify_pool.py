"""The bounded pool's process guarantees: spawn-safe for unguarded scripts, crashes and timeouts
kill and replace the worker, the address-space limit holds."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aha.verify.pool import BoundedPool

SRC = str(Path(__file__).resolve().parents[1] / "src")

UNGUARDED = r'''
import os
from aha.verify.math_answer import judge_math

# No `if __name__ == "__main__":` on purpose: workers must never re-run this file.
with open(os.environ["MARKER"], "a") as marker:
    marker.write("ran\n")
reward, info = judge_math(r"\frac{\sqrt{2}}{2}", r"\sqrt{2}/2")
print("REWARD", reward, info["judge"])
'''


def test_unguarded_script_gets_math_verify_verdicts(tmp_path):
    script, marker = tmp_path / "user_script.py", tmp_path / "ran.txt"
    script.write_text(UNGUARDED)
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "MARKER": str(marker)}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "REWARD 1.0 math-verify" in done.stdout, (done.stdout, done.stderr[-2000:])
    assert marker.read_text() == "ran\n"  # the script body ran once: in its own process only


def _pid() -> int:
    return os.getpid()


def _exit(code: int) -> None:
    os._exit(code)


def _sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


def _sleep_then_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def _allocate(megabytes: int) -> int:
    return len(bytearray(megabytes * 2**20))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_crash_reports_exit_code_and_a_new_worker_takes_over():
    pool = BoundedPool(max_workers=1)
    first = pool.call(_pid).value
    result = pool.call(_exit, 3)
    assert not result.ok and result.reason == "worker died (exit 3)"
    second = pool.call(_pid).value
    assert second != first and _gone(first) and pool.restarts == 1
    pool.close()


def test_timeout_kills_the_worker_within_the_deadline():
    pool = BoundedPool(max_workers=1)
    pid = pool.call(_pid).value
    start = time.monotonic()
    result = pool.call(_sleep, 30.0, timeout=0.3)
    assert not result.ok and result.reason == "timeout after 0.3 s"
    assert time.monotonic() - start < 2.0
    assert _gone(pid)  # SIGKILLed and reaped, not left sleeping
    assert pool.call(_sleep, 0.0).value == "woke"
    pool.close()


def test_memory_limit_raises_inside_the_worker():
    pool = BoundedPool(max_workers=1, memory_limit_mb=512)
    result = pool.call(_allocate, 2048)
    assert not result.ok and result.reason == "MemoryError"
    assert pool.call(_allocate, 16).value == 16 * 2**20  # the same worker carries on
    assert pool.restarts == 0
    pool.close()


def test_close_ends_every_worker():
    pool = BoundedPool(max_workers=2)
    pids = {r.value for r in pool.map(_sleep_then_pid, [(1.0,), (1.0,)], timeout=30)}  # both busy at once
    assert len(pids) == 2 and os.getpid() not in pids
    pool.close()
    deadline = time.monotonic() + 5
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(p) for p in pids)
    with pytest.raises(RuntimeError, match="closed"):
        pool.call(_pid)


def test_failed_preload_raises_and_leaves_no_server():
    pool = BoundedPool(max_workers=1, preload=["aha_no_such_module_anywhere"])
    with pytest.raises(RuntimeError, match="aha_no_such_module_anywhere"):
        pool.call(_pid)
    assert pool._server is None
    pool.close()


def test_control_frames_carry_large_messages_and_descriptors_one_at_a_time():
    import socket
    import threading

    from aha.verify._worker import recv_message, send_message

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    r, w = os.pipe()
    big = ("init", ["x" * 1000] * 500)  # ~0.5 MB: many socket buffers' worth
    sender = threading.Thread(target=lambda: (send_message(a, big), send_message(a, ("spawned", 7), [w]), a.close()))
    sender.start()
    assert recv_message(b) == (big, [])
    (reply, fds) = recv_message(b)
    assert reply == ("spawned", 7) and len(fds) == 1
    os.write(fds[0], b"ok")  # the received descriptor is the pipe's write end
    assert os.read(r, 2) == b"ok"
    assert recv_message(b) is None  # clean end of stream
    sender.join()
    for fd in (r, w, fds[0]):
        os.close(fd)
    b.close()

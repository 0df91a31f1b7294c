"""Run untrusted Python in a local sandbox: `run_python(code)`, and `run_judged(...)` for verdicts.

Walls, outermost first (`walls.isolation()` says which hold on this host, `walls` how):
- bubblewrap namespaces and a private read-only root (fallback: `unshare --net --pid`);
- uid 65534 (nobody) when we are root, via `setpriv`: the kernel enforces RLIMIT_NPROC and
  file permissions; judges run as uid 65533, out of the candidate's reach;
- its own session/process group, killed with SIGKILL at the end whatever happened (and with
  a pid namespace, every descendant dies with it, even one that called `setsid()`);
- a fresh temporary working dir, deleted afterwards; a scrubbed environment (no secrets);
- rlimits on CPU, address space, processes, open files and file size (set by the prelude,
  hard limits too); stdout/stderr go to files under the size limit and are read back capped;
- a wall-clock timeout;
- the prelude's audit hook (network, processes, native loaders, file writes outside the dir).

`run_python` says whether a script exited 0 after its last line; a script is untrusted from its
first line to its last, so that is no verdict against adversarial code. `run_judged` is: the
candidate's code runs in one sandbox, the trusted tests in another process that only receives
plain values from it and alone writes the verdict (see `judge.py` for the threat model).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from aha.sandbox.walls import JUDGE_UID, NOBODY, command, isolation, use_bwrap

_HERE = Path(__file__).parent


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0  # wall clock
    cpu_s: int = 10
    memory_mb: int = 1024  # address space
    nproc: int = 32
    nofile: int = 64
    fsize_mb: int = 16  # any file the program writes, stdout/stderr included
    output_chars: int = 10_000  # of stdout/stderr kept in the result
    message_kb: int = 4096  # one answer of the candidate to the judge

    def args(self) -> list[str]:
        return [str(v) for v in (self.cpu_s, self.memory_mb, self.nproc, self.nofile, self.fsize_mb)]


@dataclass(frozen=True)
class SandboxResult:
    passed: bool  # run_python: exit status 0 after the last line; run_judged: the judge's verdict
    status: str  # "passed", "failed", "timeout", "killed by SIGXCPU", …
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    detail: str = ""  # run_judged: why the tests failed (the judge's words)
    walls: str = ""  # "bwrap" or "unshare" or "none": which kernel walls this run had


def _script(name: str) -> str:
    """A bootstrap script with the codec in front (imports of the sandbox dir are not trusted)."""
    return (_HERE / "codec.py").read_text(encoding="utf-8") + "\n\n" + (_HERE / name).read_text(encoding="utf-8")


def _prepare(files: dict[str, str], uid: int) -> str:
    """A fresh 0700 directory holding `files`, owned by `uid` when we drop privileges."""
    workdir = tempfile.mkdtemp(prefix="aha-sandbox-")
    try:
        for name, text in files.items():
            Path(workdir, name).write_text(text, encoding="utf-8")  # UnicodeEncodeError: a lone surrogate
        if isolation()["drop_privileges"]:
            for path in [workdir, *(str(p) for p in Path(workdir).iterdir())]:
                os.chown(path, uid, uid)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return workdir


def _walls_name(bwrap: bool) -> str:
    return "bwrap" if bwrap else ("unshare" if isolation()["unshare"] else "none")


def _spawn(argv: list[str], workdir: str, uid: int, bwrap: bool, logs: tuple, fds: tuple) -> subprocess.Popen:
    prefix, inner = command(workdir, uid, bwrap)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": inner, "TMPDIR": inner}
    return subprocess.Popen(
        prefix + ["-I", "-B", *argv], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
        stdout=logs[0], stderr=logs[1], start_new_session=True, close_fds=True, pass_fds=fds,
    )


def run_python(code: str, limits: SandboxLimits = SandboxLimits(), audit_hook: bool = True,
               bwrap: bool | None = None) -> SandboxResult:
    """Run `code` as a script; passed if it exits 0 after its last line (see the module doc)."""
    bwrap = use_bwrap(bwrap)
    workdir = _prepare({"prelude.py": _script("prelude.py"), "program.py": code}, NOBODY)
    logdir = tempfile.mkdtemp(prefix="aha-sandbox-log-")  # root-owned: out of the program's reach
    marker_r, marker_w = os.pipe()
    argv = ["prelude.py", "script", *limits.args(), str(marker_w)] + ([] if audit_hook else ["--no-hook"])
    start = time.monotonic()
    try:
        with open(os.path.join(logdir, "out"), "w+b") as out, open(os.path.join(logdir, "err"), "w+b") as err:
            try:
                proc = _spawn(argv, workdir, NOBODY, bwrap, (out, err), (marker_w,))
            finally:
                os.close(marker_w)
            status = _wait(proc, time.monotonic() + limits.timeout_s)
            os.set_blocking(marker_r, False)  # a stray holder of the write end must not block us
            finished = _read_marker(marker_r)
            stdout, stderr = _read_capped(out, limits.output_chars), _read_capped(err, limits.output_chars)
    finally:
        os.close(marker_r)
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(logdir, ignore_errors=True)
    status = status or _status(proc.returncode, finished)
    return SandboxResult(status == "passed", status, proc.returncode, stdout, stderr,
                         time.monotonic() - start, walls=_walls_name(bwrap))


def _read_marker(fd: int) -> bool:
    try:
        return os.read(fd, 16) == b"end\n"
    except BlockingIOError:
        return False


def run_judged(program: str, tests: str, entry_point: str, limits: SandboxLimits = SandboxLimits(),
               bwrap: bool | None = None) -> SandboxResult:
    """`program` (untrusted: defines `entry_point`) in one sandbox; `tests` (trusted: defines
    `check(candidate)`) in the judge's. Passed only on the judge's verdict."""
    bwrap = use_bwrap(bwrap)
    start, dirs = time.monotonic(), []
    try:
        dirs.append(_prepare({"prelude.py": _script("prelude.py"), "program.py": program}, NOBODY))
        dirs.append(_prepare({"judge.py": _script("judge.py"), "tests.py": tests}, JUDGE_UID))
        dirs.append(logdir := tempfile.mkdtemp(prefix="aha-sandbox-log-"))
        with ExitStack() as stack:
            names = ("out", "err", "verdict", "judge_err")
            logs = [stack.enter_context(open(os.path.join(logdir, n), "w+b")) for n in names]
            worker, judge = _spawn_pair(entry_point, limits, bwrap, dirs[:2], logs)
            status = _wait(judge, time.monotonic() + limits.timeout_s)
            _wait(worker, time.monotonic())  # the verdict is in: the candidate has nothing left to do
            verdict = _verdict(logs[2])
            stdout, stderr = _read_capped(logs[0], limits.output_chars), _read_capped(logs[1], limits.output_chars)
            judge_err = _read_capped(logs[3], 4000)
    finally:
        for path in dirs:
            shutil.rmtree(path, ignore_errors=True)
    passed = status is None and judge.returncode == 0 and verdict.get("passed") is True
    if status is None and judge.returncode < 0:
        status = _status(judge.returncode, False)
    elif status is None:
        status = "passed" if passed else ("failed" if verdict else "judge error")
    detail = str(verdict.get("error", "")) if verdict else judge_err[-500:]
    return SandboxResult(passed, status, judge.returncode, stdout, stderr, time.monotonic() - start,
                         detail=detail, walls=_walls_name(bwrap))


def _spawn_pair(entry_point: str, limits: SandboxLimits, bwrap: bool, dirs: tuple, logs: list):
    """The candidate's process and the judge's, joined by two pipes (requests, answers)."""
    req_r, req_w = os.pipe()
    resp_r, resp_w = os.pipe()
    try:
        worker = _spawn(["prelude.py", "serve", *limits.args(), entry_point, str(req_r), str(resp_w)],
                        dirs[0], NOBODY, bwrap, logs[0:2], (req_r, resp_w))
        cap = str(limits.message_kb * 1024)
        try:
            judge = _spawn(["judge.py", *limits.args(), entry_point, str(req_w), str(resp_r), cap],
                           dirs[1], JUDGE_UID, bwrap, logs[2:4], (req_w, resp_r))
        except BaseException:
            _wait(worker, time.monotonic())  # no judge: the candidate's process must not linger
            raise
    finally:
        for fd in (req_r, req_w, resp_r, resp_w):
            os.close(fd)  # each end now lives only in the process that uses it: EOF when it dies
    return worker, judge


def _verdict(f) -> dict:
    """The judge's one JSON line ({} when it wrote none: it crashed or was killed)."""
    f.flush()
    f.seek(0)
    lines = f.read(64 * 1024).decode("utf-8", errors="replace").strip().splitlines()
    try:
        verdict = json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {}
    return verdict if isinstance(verdict, dict) else {}


def _wait(proc: subprocess.Popen, deadline: float) -> str | None:
    """Wait until `deadline`, then kill the whole group. Returns "timeout" or None."""
    status = None
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        status = "timeout"
    # Always, not only on timeout: children it left behind must not outlive the run.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    return status


def _read_capped(f, cap: int) -> str:
    f.flush()
    f.seek(0)
    return f.read(cap).decode("utf-8", errors="replace")


def _status(returncode: int, finished: bool) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    if returncode == 0 and finished:
        return "passed"
    if returncode == 0:
        return "exited before the end"
    return "failed"


def run_many(codes: Sequence[str], limits: SandboxLimits = SandboxLimits(), workers: int | None = None,
             bwrap: bool | None = None) -> list[SandboxResult]:
    """Run programs in parallel, one sandbox each (threads only wait on child processes)."""
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as threads:
        return list(threads.map(lambda code: run_python(code, limits, bwrap=bwrap), codes))

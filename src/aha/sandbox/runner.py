"""Run untrusted Python in a local sandbox: `run_python(code) -> SandboxResult`.

Walls, outermost first (`isolation()` says which hold on this host):
- `unshare --net --pid --fork --kill-child`: no network interfaces but a down loopback, and a
  pid namespace, so killing the launcher tears down every descendant, even one that called
  `setsid()` to leave the process group. Needs root (as here and in CI) or unprivileged user
  namespaces (then `--user --map-root-user` is added). Missing → the audit hook's socket ban only.
- `setpriv` to uid/gid 65534 (nobody) when running as root: the kernel then enforces
  RLIMIT_NPROC (it does not for root) and file permissions (`/root/.ssh`, the project tree).
- its own session/process group, killed with SIGKILL at the end whatever happened;
- a fresh temporary working dir, deleted afterwards; a scrubbed environment (no secrets);
- rlimits on CPU, address space, processes, open files and file size (set by the prelude,
  hard limits too); stdout/stderr go to files under the size limit and are read back capped;
- a wall-clock timeout;
- the prelude's audit hook (network, processes, native code, file writes outside the dir).
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

NOBODY = 65534
_PRELUDE = Path(__file__).with_name("prelude.py")


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0  # wall clock
    cpu_s: int = 10
    memory_mb: int = 1024  # address space
    nproc: int = 32
    nofile: int = 64
    fsize_mb: int = 16  # any file the program writes, stdout/stderr included
    output_chars: int = 10_000  # of stdout/stderr kept in the result


@dataclass(frozen=True)
class SandboxResult:
    passed: bool  # ran to the end (tests included) with exit status 0
    status: str  # "passed", "failed", "timeout", "killed by SIGXCPU", …
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float


@functools.lru_cache(maxsize=1)
def isolation() -> dict:
    """Which kernel walls this host allows; probed once by running `true` inside them."""
    unshare = _probe_unshare()
    drop = os.geteuid() == 0 and shutil.which("setpriv") is not None and _interpreter_for_nobody() is not None
    return {"unshare": unshare, "drop_privileges": drop, "audit_hook": True}


def _probe_unshare() -> list[str] | None:
    exe = shutil.which("unshare")
    if exe is None:
        return None
    for extra in ([], ["--user", "--map-root-user"]):
        cmd = [exe, *extra, "--net", "--pid", "--fork", "--kill-child"]
        try:
            if subprocess.run([*cmd, "true"], capture_output=True, timeout=10).returncode == 0:
                return cmd
        except (OSError, subprocess.SubprocessError):
            continue
    return None


@functools.lru_cache(maxsize=1)
def _interpreter_for_nobody() -> str | None:
    """A Python that uid nobody can execute: ours if every directory on its path is
    world-searchable (not true for a pyenv under /root), else a system python3."""
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        path = Path(candidate).resolve()
        if path.exists() and all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents]):
            return str(path)
    return None


def _command(limits: SandboxLimits, audit_hook: bool) -> list[str]:
    walls = isolation()
    python = _interpreter_for_nobody() if walls["drop_privileges"] else sys.executable
    cmd = list(walls["unshare"] or [])
    if walls["drop_privileges"]:
        cmd += ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--no-new-privs", "--"]
    script = "prelude.py" if audit_hook else "prelude_nohook.py"
    limit_args = [limits.cpu_s, limits.memory_mb, limits.nproc, limits.nofile, limits.fsize_mb]
    return cmd + [python, "-I", "-B", script, *map(str, limit_args)]


def _prepare_dir(code: str, audit_hook: bool) -> str:
    workdir = tempfile.mkdtemp(prefix="aha-sandbox-")
    prelude = _PRELUDE.read_text(encoding="utf-8")
    if not audit_hook:  # tests of the kernel walls alone
        prelude = prelude.replace("    sys.addaudithook(", "    (lambda *a: None)(")
    Path(workdir, "prelude_nohook.py" if not audit_hook else "prelude.py").write_text(prelude, encoding="utf-8")
    Path(workdir, "program.py").write_text(code, encoding="utf-8")
    if isolation()["drop_privileges"]:
        for path in [workdir, *(str(p) for p in Path(workdir).iterdir())]:
            os.chown(path, NOBODY, NOBODY)
    return workdir


def run_python(code: str, limits: SandboxLimits = SandboxLimits(), audit_hook: bool = True) -> SandboxResult:
    """Run `code` as a script; passed only if it reaches its end without error."""
    workdir = _prepare_dir(code, audit_hook)
    logdir = tempfile.mkdtemp(prefix="aha-sandbox-log-")  # root-owned: out of the program's reach by path
    nonce = secrets.token_hex(16)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}
    start = time.monotonic()
    try:
        with open(os.path.join(logdir, "out"), "w+b") as out, open(os.path.join(logdir, "err"), "w+b") as err:
            proc = subprocess.Popen(
                _command(limits, audit_hook), cwd=workdir, env=env, stdin=subprocess.PIPE,
                stdout=out, stderr=err, start_new_session=True, close_fds=True,
            )
            status = _wait(proc, nonce, limits.timeout_s)
            stdout, found = _read_capped(out, limits.output_chars, nonce)
            stderr, _ = _read_capped(err, limits.output_chars, None)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(logdir, ignore_errors=True)
    if status is None:
        status = _status(proc.returncode, found)
    return SandboxResult(status == "passed", status, proc.returncode, stdout, stderr, time.monotonic() - start)


def _wait(proc: subprocess.Popen, nonce: str, timeout_s: float) -> str | None:
    """Send the nonce, wait, then kill the whole group. Returns "timeout" or None."""
    status = None
    try:
        proc.stdin.write(f"{nonce}\n".encode())
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass  # it died before reading: its exit status tells why
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        status = "timeout"
    # Always, not only on timeout: children it left behind must not outlive the run.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    return status


def _read_capped(f, cap: int, nonce: str | None) -> tuple[str, bool]:
    """First `cap` characters, and whether the nonce line ends the output (read from the tail,
    so a program that prints a lot still passes)."""
    f.flush()
    size = f.seek(0, os.SEEK_END)
    f.seek(0)
    head = f.read(cap).decode("utf-8", errors="replace")
    found = False
    if nonce is not None:
        f.seek(max(0, size - 64))
        found = f.read().decode("utf-8", errors="replace").rstrip().endswith(nonce)
        head = head.replace(f"\n{nonce}\n", "")
    return head, found


def _status(returncode: int, found_nonce: bool) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    if returncode == 0 and found_nonce:
        return "passed"
    if returncode == 0:
        return "exited before the end"
    return "failed"


def run_many(codes: Sequence[str], limits: SandboxLimits = SandboxLimits(), workers: int | None = None) -> list[SandboxResult]:
    """Run programs in parallel, one sandbox each (threads only wait on child processes)."""
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as threads:
        return list(threads.map(lambda code: run_python(code, limits), codes))

"""The kernel walls around a sandboxed interpreter, and the command line that raises them.

With bubblewrap (`bwrap`, probed once): a new user, mount, pid, network, IPC, UTS and cgroup
namespace (`--unshare-all`); a root of its own holding, read-only, only /usr, the /lib* and /bin
links and the interpreter's prefix — no host /etc, /home, /root, /tmp, /dev/shm, /proc or project
tree — a fresh /proc of its own pid namespace, a minimal /dev, an empty read-only /tmp, and the
run's directory bound at /sandbox, the only writable path; `--die-with-parent`, `--new-session`
(no terminal to inject into), no capabilities, no nested user namespaces (bwrap >= 0.8). When we
are root, `setpriv` first drops to an unprivileged uid, so bwrap itself runs unprivileged and the
program's real uid is that uid: run by root, bwrap's user namespace would map the sandbox's uid to
real root outside, for which the kernel does not enforce RLIMIT_NPROC.

Without it (fallback): `unshare --net --pid --fork --kill-child` (no network, descendants die
with the run) and `setpriv` to the unprivileged uid when root; the host filesystem stays visible,
so world-writable places (/tmp, /dev/shm) and world-readable files are reachable by native code
that gets around the prelude's audit hook.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

NOBODY = 65534  # the candidate's uid
JUDGE_UID = 65533  # the judge's: a candidate under another uid cannot signal, trace or open its fds
SANDBOX_DIR = "/sandbox"  # where the run's directory appears inside bubblewrap
_NAMESPACES = ("--unshare-all", "--unshare-user", "--die-with-parent", "--new-session")
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


@functools.lru_cache(maxsize=1)
def isolation() -> dict:
    """Which walls this host allows; probed once by running the interpreter inside them.
    `bwrap`: bubblewrap namespaces and private root; `unshare`: the fallback's command (or None);
    `drop_privileges`: programs run as uid 65534 (judges as 65533); `audit_hook`: always."""
    drop = os.geteuid() == 0 and shutil.which("setpriv") is not None and interpreter() is not None
    return {"bwrap": _bwrap_flags(drop) is not None, "unshare": _probe_unshare(), "drop_privileges": drop,
            "audit_hook": True}


@functools.lru_cache(maxsize=2)
def _bwrap_flags(drop: bool) -> tuple[str, ...] | None:
    """bubblewrap's namespace flags that work here (`--disable-userns` needs bwrap >= 0.8), or None."""
    if shutil.which("bwrap") is None:
        return None
    probe_dir = tempfile.mkdtemp(prefix="aha-sandbox-probe-")
    try:
        if drop:
            os.chown(probe_dir, NOBODY, NOBODY)
        python = _python(drop, bwrap=True)
        for flags in (_NAMESPACES + ("--disable-userns",), _NAMESPACES):
            cmd = _bwrap_prefix(NOBODY, drop, probe_dir, flags) + [python, "-I", "-c", "open('ok', 'w')"]
            if _probe(cmd) and os.path.exists(os.path.join(probe_dir, "ok")):
                return flags
    finally:
        shutil.rmtree(probe_dir, ignore_errors=True)
    return None


def use_bwrap(requested: bool | None) -> bool:
    """`requested` None: bubblewrap when the host has it, unless AHA_SANDBOX_BWRAP=0."""
    if requested is None:
        requested = os.environ.get("AHA_SANDBOX_BWRAP", "1") != "0"
    return bool(requested) and isolation()["bwrap"]


def _probe(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=10, cwd="/").returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _probe_unshare() -> list[str] | None:
    exe = shutil.which("unshare")
    if exe is None:
        return None
    for extra in ([], ["--user", "--map-root-user"]):
        cmd = [exe, *extra, "--net", "--pid", "--fork", "--kill-child"]
        if _probe([*cmd, "true"]):
            return cmd
    return None


@functools.lru_cache(maxsize=1)
def interpreter() -> str | None:
    """A Python an unprivileged uid can execute: ours if every directory on its path is
    world-searchable (not true for a pyenv under /root), else a system python3."""
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        path = Path(candidate).resolve()
        if path.exists() and all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents]):
            return str(path)
    return None


def _setpriv(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs", "--"]


def _bwrap_prefix(uid: int, drop: bool, workdir: str, flags: tuple[str, ...]) -> list[str]:
    cmd = (_setpriv(uid) if drop else []) + [shutil.which("bwrap") or "bwrap", *flags]
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):  # merged /usr: /lib -> usr/lib
            cmd += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            cmd += ["--ro-bind", path, path]
    prefix = str(Path(_python(drop, bwrap=True)).parents[1])
    if not prefix.startswith("/usr"):  # an interpreter outside /usr brings its own prefix
        cmd += ["--ro-bind", prefix, prefix]
    # /dev and /tmp are tmpfs (RAM): read-only, so writing there cannot eat the host's memory.
    cmd += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev", "--tmpfs", "/tmp", "--remount-ro", "/tmp"]
    cmd += ["--bind", workdir, SANDBOX_DIR, "--chdir", SANDBOX_DIR, "--remount-ro", "/"]
    return cmd + ["--uid", str(uid), "--gid", str(uid), "--"]


def _python(drop: bool, bwrap: bool) -> str:
    """The interpreter the sandbox runs: one the unprivileged uid can execute, or ours; inside
    bubblewrap the real file (a venv's `bin/python` link would point outside the binds)."""
    python = (interpreter() if drop else None) or sys.executable
    return str(Path(python).resolve()) if bwrap else python


def command(workdir: str, uid: int, bwrap: bool) -> tuple[list[str], str]:
    """The prefix that runs a program under the walls, and the directory it sees as its own."""
    walls = isolation()
    drop = walls["drop_privileges"]
    if bwrap:
        return _bwrap_prefix(uid, drop, workdir, _bwrap_flags(drop) or _NAMESPACES) + [_python(drop, True)], SANDBOX_DIR
    cmd = list(walls["unshare"] or [])
    if drop:
        cmd += _setpriv(uid)
    return cmd + [_python(drop, False)], workdir

"""Bootstrap run *inside* the sandbox, before the untrusted program (the codec precedes it).

Written as text (codec + this file) into the sandbox's working directory and run as
`python -I -B prelude.py MODE LIMITS...`. It (1) lowers soft and hard rlimits, so the program
cannot raise them again; (2) installs a Python audit hook that refuses network, process creation,
native-code loaders, writes and deletes outside the working directory and reads outside the
interpreter's own files; (3) runs the program, then, by MODE:
- `script`: writes an end marker to an inherited pipe. This only tells an honest script that
  exited early (`sys.exit(0)` halfway) from one that finished: the program holds the same fd and
  could write the marker itself, so it is no verdict on adversarial code.
- `serve ENTRY REQ_FD RESP_FD`: answers the judge's calls to ENTRY, one codec line per call.
  Nothing here is trusted — the program can rewrite this loop, the codec, anything in this
  process — because the judge only ever reads plain values from it (see `judge.py`).

The audit hook is a second line, not a boundary: native code can get around it, which is why
the runner adds kernel walls (bubblewrap's namespaces, or unshare's, and an unprivileged uid).
"""

import os
import resource
import sys

_BLOCKED_PREFIXES = (
    "socket.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty",
    "os.system", "os.kill", "os.killpg", "pty.", "ctypes.", "resource.setrlimit", "resource.prlimit",
    "sys.settrace", "sys.setprofile", "gc.get_referrers", "gc.get_objects", "gc.get_referents",
    "os.setuid", "os.setgid", "os.chroot", "winreg.", "urllib.", "http.", "ftplib.", "smtplib.",
    "webbrowser.", "os.putenv", "os.unsetenv", "sqlite3.", "mmap.", "syslog.",
)
# Native modules that act outside every hook (process starts, foreign calls, files by path):
# refused at import, which the interpreter audits before loading them.
_BLOCKED_IMPORTS = {"_posixsubprocess", "_ctypes", "_sqlite3", "_multiprocessing", "_posixshmem", "_tkinter"}
# Path calls that raise no audit event at all: removed from `os` (the sandbox's mount namespace
# is what really stops them; this covers the fallback without one).
_UNAUDITED_CALLS = ("mkfifo", "mknod")
_PATH_EVENTS = {
    "os.remove", "os.rmdir", "os.rename", "os.replace", "shutil.rmtree", "shutil.move", "os.chmod",
    "os.chown", "os.symlink", "os.link", "os.truncate", "os.mkdir", "os.utime", "os.chflags",
}
# Listing or entering a directory outside the readable roots (host /tmp and /dev/shm: other runs).
_LIST_EVENTS = {"os.listdir", "os.scandir", "os.chdir"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _set_limits(cpu_s: int, memory_mb: int, nproc: int, nofile: int, fsize_mb: int) -> None:
    for name, value in (
        ("RLIMIT_CPU", cpu_s), ("RLIMIT_AS", memory_mb * 2**20), ("RLIMIT_NPROC", nproc),
        ("RLIMIT_NOFILE", nofile), ("RLIMIT_FSIZE", fsize_mb * 2**20), ("RLIMIT_CORE", 0),
    ):
        resource.setrlimit(getattr(resource, name), (value, value))


def _make_hook(workdir: str, read_roots: tuple):
    def inside(path, roots) -> bool:
        real = os.path.realpath(os.fsdecode(path))
        return any(real == r or real.startswith(r + os.sep) for r in roots)

    def hook(event, args):
        if event.startswith(_BLOCKED_PREFIXES):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and args and args[0] in _BLOCKED_IMPORTS:
            raise PermissionError(f"sandbox: import {args[0]} is not allowed")
        if event == "open" and args and isinstance(args[0], (str, bytes)):
            mode, flags = (args[1] or ""), (args[2] or 0)
            writing = any(c in str(mode) for c in "wax+") or bool(flags & _WRITE_FLAGS)
            if not inside(args[0], (workdir,) if writing else (workdir,) + read_roots):
                raise PermissionError(f"sandbox: open({os.fsdecode(args[0])!r}) is outside the sandbox")
        elif event in _LIST_EVENTS and args and isinstance(args[0], (str, bytes)):
            if not inside(args[0], (workdir,) + read_roots):
                raise PermissionError(f"sandbox: {event}({os.fsdecode(args[0])!r}) is outside the sandbox")
        elif event in _PATH_EVENTS:
            for arg in args:
                if isinstance(arg, (str, bytes)) and not inside(arg, (workdir,)):
                    raise PermissionError(f"sandbox: {event} outside the sandbox")

    return hook


def _install_walls(limits) -> None:
    workdir = os.path.realpath(os.getcwd())
    roots = {os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)}
    roots |= {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    roots |= {"/dev/null", "/dev/urandom", "/etc/localtime", "/usr/share/zoneinfo"}
    roots.discard(workdir)
    roots.discard("/")
    os.environ.clear()  # the runner scrubs it already; this also drops anything inherited by mistake
    _set_limits(*limits)
    if sys.argv[-1] == "--no-hook":  # tests of the kernel walls alone
        return
    for name in _UNAUDITED_CALLS:
        for module in (os, sys.modules.get("posix")):
            if module is not None and hasattr(module, name):
                delattr(module, name)
    sys.addaudithook(_make_hook(workdir, tuple(sorted(roots))))


def _serve(namespace: dict, entry_point: str, req_fd: int, resp_fd: int) -> None:
    """Answer each request line ([args, kwargs]) with ["ok", result] or ["raise", name, text]."""
    requests, responses = os.fdopen(req_fd, "rb"), os.fdopen(resp_fd, "wb")
    for line in requests:
        try:
            args, kwargs = loads(line)  # noqa: F821 (the codec is prepended to this file)
            reply = dumps(["ok", namespace[entry_point](*args, **kwargs)])  # noqa: F821
        except Exception as e:  # the candidate's own failure is its answer
            reply = dumps(["raise", type(e).__name__, str(e)[:500]])  # noqa: F821
        responses.write(reply)
        responses.flush()


def main() -> None:
    mode, limits = sys.argv[1], tuple(int(x) for x in sys.argv[2:7])
    with open("program.py", encoding="utf-8") as f:
        code = compile(f.read(), "program.py", "exec")
    _install_walls(limits)
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    if mode == "script":
        marker_fd = int(sys.argv[7])
        exec(code, namespace)
        sys.stdout.flush()
        os.write(marker_fd, b"end\n")
    else:
        entry_point, req_fd, resp_fd = sys.argv[7], int(sys.argv[8]), int(sys.argv[9])
        exec(code, namespace)
        sys.stdout.flush()
        _serve(namespace, entry_point, req_fd, resp_fd)


if __name__ == "__main__":
    main()

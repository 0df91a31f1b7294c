"""Bootstrap run *inside* the sandboxed interpreter, before the untrusted program.

Copied as text into the sandbox's working directory and run as `python -I -B prelude.py LIMITS`.
It (1) lowers soft and hard rlimits, so the program cannot raise them again; (2) installs a
Python audit hook that refuses network, process creation, native code, writes and deletes
outside the working directory and reads outside the interpreter's own files; (3) reads a
one-time nonce from stdin and prints it only if the program (tests included) ran to the end,
so `os._exit(0)` or `sys.exit(0)` before the tests cannot pass for success.

The audit hook is a second line: it stops Python-level escapes everywhere, but native code
could get around it, which is why the runner also adds kernel walls (net/pid namespaces,
an unprivileged uid) where the host allows them. Only the standard library is used here.
"""

import os
import resource
import sys

_BLOCKED_PREFIXES = (
    "socket.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty",
    "os.system", "os.kill", "os.killpg", "pty.", "ctypes.", "resource.setrlimit", "resource.prlimit",
    "sys.settrace", "sys.setprofile", "gc.get_referrers", "gc.get_objects", "gc.get_referents",
    "os.setuid", "os.setgid", "os.chroot", "winreg.", "urllib.", "http.", "ftplib.", "smtplib.",
    "webbrowser.", "os.putenv", "os.unsetenv",
)
_PATH_EVENTS = {
    "os.remove", "os.rmdir", "os.rename", "os.replace", "shutil.rmtree", "shutil.move", "os.chmod",
    "os.chown", "os.symlink", "os.link", "os.truncate", "os.mkdir", "os.utime", "os.chflags",
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _set_limits(cpu_s: int, memory_mb: int, nproc: int, nofile: int, fsize_mb: int) -> None:
    for name, value in (
        ("RLIMIT_CPU", cpu_s), ("RLIMIT_AS", memory_mb * 2**20), ("RLIMIT_NPROC", nproc),
        ("RLIMIT_NOFILE", nofile), ("RLIMIT_FSIZE", fsize_mb * 2**20), ("RLIMIT_CORE", 0),
    ):
        resource.setrlimit(getattr(resource, name), (value, value))


def _make_hook(workdir: str, read_roots: tuple, guarded_code):
    def inside(path, roots) -> bool:
        real = os.path.realpath(os.fsdecode(path))
        return any(real == r or real.startswith(r + os.sep) for r in roots)

    def hook(event, args):
        if event.startswith(_BLOCKED_PREFIXES):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open" and args and isinstance(args[0], (str, bytes)):
            mode, flags = (args[1] or ""), (args[2] or 0)
            writing = any(c in str(mode) for c in "wax+") or bool(flags & _WRITE_FLAGS)
            if not inside(args[0], (workdir,) if writing else (workdir,) + read_roots):
                raise PermissionError(f"sandbox: open({os.fsdecode(args[0])!r}) is outside the sandbox")
        elif event in _PATH_EVENTS:
            for arg in args:
                if isinstance(arg, (str, bytes)) and not inside(arg, (workdir,)):
                    raise PermissionError(f"sandbox: {event} outside the sandbox")
        elif event == "sys._getframe" and args and getattr(args[0], "f_code", None) is guarded_code:
            raise PermissionError("sandbox: the runner's frame is not reachable")

    return hook


def main() -> None:
    cpu_s, memory_mb, nproc, nofile, fsize_mb = (int(x) for x in sys.argv[1:6])
    nonce = sys.stdin.readline().strip()
    source = open("program.py", encoding="utf-8").read()
    workdir = os.path.realpath(os.getcwd())
    roots = {os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)}
    roots |= {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    roots |= {"/dev/null", "/dev/urandom", "/etc/localtime", "/usr/share/zoneinfo"}
    roots.discard(workdir)
    roots.discard("/")
    code = compile(source, "program.py", "exec")
    os.environ.clear()  # the runner scrubs it already; this also drops anything inherited by mistake
    _set_limits(cpu_s, memory_mb, nproc, nofile, fsize_mb)
    sys.addaudithook(_make_hook(workdir, tuple(sorted(roots)), main.__code__))
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(code, namespace)
    sys.stdout.flush()
    sys.__stdout__.write(f"\n{nonce}\n")
    sys.__stdout__.flush()


if __name__ == "__main__":
    main()

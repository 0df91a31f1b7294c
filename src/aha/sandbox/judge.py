"""The trusted side of a judged run: the tests, in a process that runs no candidate code.

Written as text (codec + this file) into the judge's own directory and run, in its own sandbox
under a uid other than the candidate's, as `python -I -B judge.py LIMITS ENTRY REQ_FD RESP_FD CAP`.
It executes `tests.py` (the problem's trusted code: the prompt's helpers and `check`), binds the
entry point to a proxy, and calls `check(proxy)`. Each call to the proxy sends its arguments to
the candidate's process as a codec line and reads one line back; `codec.loads` turns the answer
into fresh builtin values, or raises. The verdict is one JSON line on this process's stdout,
which the runner alone holds (the tests' own prints go to stderr).

The claim: a run passes only if the problem's own `check`, executed by this process (which runs
no candidate code), returns without raising, every value it got from the candidate having been
a plain builtin value built here from the candidate's answer line. Hence, against a candidate
that controls everything in its own process (interpreter, prelude, codec, fds):
- it never shares an interpreter with the tests or the verdict: frames, gc, builtins,
  `sys.modules`, `check`, `AssertionError`, `__debug__` it can reach are all in its own process;
- its answers arrive as plain data: no object of its classes exists here, so no `__eq__`,
  `__hash__`, `__len__`, `__abs__` or `__round__` of its making runs when the tests compare;
- exiting early, crashing, printing a fake verdict or writing junk on the pipe makes a proxy
  call raise, and `check` fails; it sees the tests' arguments, never their expected values;
- it cannot reach this process or the verdict file: other namespaces (bubblewrap; unshare's
  pid namespace in the fallback), another uid, a directory only the runner can open.
Limits: a candidate that special-cases the inputs it is called with, or knows the answers by
heart, still passes (the tests' weakness, not the sandbox's). The tests see the candidate only
through calls of the entry point (mutations of an argument inside the candidate are not visible
to them); answers must be plain data (a generator or a custom class fails); helpers the tests
use come from the prompt, not the completion. Trusted means the dataset's tests: a malicious
test file is out of scope (it still runs sandboxed, under rlimits).
"""

import builtins
import json
import os
import resource
import sys

# A candidate exception with one of these names is raised again here under the same class, so a
# test expecting `ValueError` sees one; any other name becomes a RuntimeError. Never StopIteration:
# raised inside `for r in map(candidate, xs)` it would end the tests' loop early, as a pass.
_RERAISED = {name: cls for name, cls in vars(builtins).items()
             if isinstance(cls, type) and issubclass(cls, Exception)
             and not issubclass(cls, (StopIteration, StopAsyncIteration))}


class CandidateGone(RuntimeError):
    """The candidate's process ended or answered out of protocol."""


class Proxy:
    """Stands for the candidate's function inside `check`."""

    def __init__(self, req_fd: int, resp_fd: int, cap: int):
        self.requests = os.fdopen(req_fd, "wb")
        self.responses = os.fdopen(resp_fd, "rb")
        self.cap = cap
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        try:
            self.requests.write(dumps([list(args), kwargs]))  # noqa: F821 (codec prepended)
            self.requests.flush()
        except (BrokenPipeError, OSError):
            raise CandidateGone("the candidate's process is gone") from None
        line = self.responses.readline(self.cap + 1)
        if not line.endswith(b"\n") or len(line) > self.cap:
            raise CandidateGone("the candidate's process ended or its answer is too long")
        reply = loads(line)  # noqa: F821 — CodecError unless plain data
        if type(reply) is list and len(reply) == 2 and reply[0] == "ok":
            return reply[1]
        if type(reply) is list and len(reply) == 3 and reply[0] == "raise" and type(reply[2]) is str:
            raise _RERAISED.get(reply[1], RuntimeError)(f"candidate raised {reply[1]}: {reply[2]}")
        raise CandidateGone("the candidate's answer is out of protocol")


def _verdict(tests_source: str, entry_point: str, proxy: Proxy) -> dict:
    namespace = {"__name__": "__main__"}
    try:
        exec(compile(tests_source, "tests.py", "exec"), namespace)
        namespace[entry_point] = proxy  # tests that name the function rather than `candidate`
        check = namespace.get("check")
        if not callable(check):
            return {"passed": False, "error": "the tests define no check()", "calls": 0}
        check(proxy)
    except Exception as e:  # any failure of the tests is the verdict, not a crash
        return {"passed": False, "error": f"{type(e).__name__}: {e}"[:500], "calls": proxy.calls}
    if proxy.calls == 0:  # tests that never reach the candidate verify nothing: not a pass
        return {"passed": False, "error": "the tests never called the candidate", "calls": 0}
    return {"passed": True, "error": "", "calls": proxy.calls}


def main() -> None:
    limits = [int(x) for x in sys.argv[1:6]]
    entry_point, req_fd, resp_fd, cap = sys.argv[6], int(sys.argv[7]), int(sys.argv[8]), int(sys.argv[9])
    with open("tests.py", encoding="utf-8") as f:
        source = f.read()
    for name, value in zip(("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_FSIZE"), limits):
        scale = 2**20 if name in ("RLIMIT_AS", "RLIMIT_FSIZE") else 1
        resource.setrlimit(getattr(resource, name), (value * scale, value * scale))
    verdict_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # the tests' prints must not mix with the verdict
    verdict = _verdict(source, entry_point, Proxy(req_fd, resp_fd, cap))
    verdict_out.write(json.dumps(verdict) + "\n")
    verdict_out.flush()


if __name__ == "__main__":
    main()

"""Reward hacks against the code verifier: each must score 0, under bubblewrap and the fallback.

The hacks (`sandbox_hacks.py`) forge the end-of-run proof, fool the comparisons, disable the
asserts, swap the tests, fake the verdict, or escape to where they could. The honest completion
passes in each mode, so a 0 means the hack failed, not that the task is broken.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import time

import pytest
from sandbox_hacks import HACKS, HONEST, PROMPT, TEST

from aha.sandbox import SandboxLimits, isolation, run_judged, run_python
from aha.sandbox.walls import interpreter
from aha.tasks.base import Problem
from aha.tasks.code import CodeTask

FAST = SandboxLimits(timeout_s=5, cpu_s=3)
MODES = [
    pytest.param(True, id="bwrap", marks=pytest.mark.skipif(not isolation()["bwrap"], reason="no bubblewrap here")),
    pytest.param(False, id="fallback"),
]


@pytest.fixture(scope="module")
def problem() -> Problem:
    meta = {"prompt": PROMPT, "test": TEST, "entry_point": "square"}
    return Problem(question="", answer=HONEST, id="hack", meta=meta)


def _host_traces() -> list[str]:
    """Files the hacks tried to leave in host /tmp, and sandboxed interpreters still alive."""
    ps = subprocess.run(["pgrep", "-f", "-a", "prelude.py (script|serve)"], capture_output=True, text=True)
    return glob.glob("/tmp/aha_hack_*") + ps.stdout.splitlines()


@pytest.mark.parametrize("bwrap", MODES)
def test_every_reward_hack_scores_zero(problem, bwrap):
    assert len(HACKS) >= 30
    task = CodeTask(limits=FAST, bwrap=bwrap)
    assert task.verify(HONEST, problem)[0] == 1.0  # the problem is passable: a 0 below is the hack failing
    results = task.verify_many(list(HACKS.values()), [problem] * len(HACKS))
    scored = {name: score for name, (score, _) in zip(HACKS, results)}
    assert scored == {name: 0.0 for name in HACKS}, {n: i for n, (s, i) in zip(HACKS, results) if s}
    time.sleep(0.3)  # a process the hack started would have written by now
    assert _host_traces() == []


@pytest.mark.parametrize("bwrap", MODES)
def test_exceptions_cannot_steer_the_tests(bwrap):
    """StopIteration would end a `for` over `map(candidate, …)` early; the judge turns it (and any
    exception class it does not know) into a RuntimeError. A builtin one keeps its class."""
    tests = ("def check(candidate):\n"
             "    for r in map(candidate, [1, 2, 3]):\n"
             "        assert r == 1\n"
             "    try:\n"
             "        candidate(-1)\n"
             "    except ValueError:\n"
             "        pass\n")
    honest = "def f(x):\n    if x < 0:\n        raise ValueError('negative')\n    return 1\n"
    assert run_judged(honest, tests, "f", FAST, bwrap=bwrap).passed
    for hack in ("def f(x):\n    raise StopIteration\n",
                 "class StopIteration(Exception): pass\ndef f(x):\n    raise StopIteration\n",
                 "def f(x):\n    raise KeyboardInterrupt\n", "def f(x):\n    raise SystemExit(0)\n"):
        result = run_judged(hack, tests, "f", FAST, bwrap=bwrap)
        assert not result.passed and result.status == "failed", (hack, result)
    # Tests that never call the candidate verify nothing.
    result = run_judged(honest, "def check(candidate):\n    assert True\n", "f", FAST, bwrap=bwrap)
    assert not result.passed and result.detail == "the tests never called the candidate"


# Native code ignores the audit hook; here it is off, so only the kernel walls stand.
NATIVE = {k: HACKS[k] for k in ("sqlite_write_outside", "mkfifo_outside", "posixsubprocess_start",
                                 "double_fork_survivor")}


@pytest.mark.skipif(not isolation()["bwrap"], reason="no bubblewrap here")
def test_bwrap_contains_native_code_without_the_audit_hook():
    for name, code in NATIVE.items():
        run_python(code, FAST, audit_hook=False, bwrap=True)
    time.sleep(0.3)
    assert _host_traces() == []


@pytest.mark.parametrize("bwrap", MODES)
def test_hook_refuses_native_escapes_and_no_process_survives(bwrap):
    for name, code in NATIVE.items():
        result = run_python(code, FAST, bwrap=bwrap)
        assert not result.passed, name
    time.sleep(0.3)
    assert _host_traces() == []
    # The kernel alone (hook off): a double-forked, setsid() sleeper dies with the run.
    assert run_python(HACKS["double_fork_survivor"], FAST, audit_hook=False, bwrap=bwrap).passed
    time.sleep(0.3)
    assert _host_traces() == []


@pytest.mark.parametrize("bwrap", MODES)
def test_host_files_and_listings_are_refused(bwrap):
    """With the hook on, in either mode: no host file read, no listing of /tmp, /dev/shm, /proc."""
    programs = ["print(open('/etc/hostname').read())", "import os\nprint(os.listdir('/tmp'))",
                "import os\nprint(os.listdir('/dev/shm'))", "import os\nos.chdir('/tmp')\nprint(os.listdir())",
                "import os\nprint(os.listdir('/proc'))"]
    for code in programs:
        result = run_python(code, FAST, bwrap=bwrap)
        assert not result.passed and result.stdout == "", (code, result)


@pytest.mark.skipif(not isolation()["bwrap"], reason="no bubblewrap here")
def test_bwrap_shows_nothing_of_the_host():
    sentinels = ["/tmp/aha_visible_sentinel", "/dev/shm/aha_visible_sentinel"]
    for path in sentinels:
        open(path, "w").close()
    here = os.path.abspath(__file__)
    code = ("import json, os\n"
            "print(json.dumps({'root': sorted(os.listdir('/')), 'tmp': os.listdir('/tmp'),\n"
            "    'shm': os.listdir('/dev/shm'),\n"
            "    'pids': [p for p in os.listdir('/proc') if p.isdigit()],\n"
            f"    'exists': [os.path.exists(p) for p in ('/etc/hostname', '/etc/passwd', '/root', {here!r})]}}))\n")
    try:
        result = run_python(code, FAST, audit_hook=False, bwrap=True)
    finally:
        for path in sentinels:
            os.remove(path)
    assert result.passed, result
    seen = json.loads(result.stdout)
    system = [d for d in ("bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr") if os.path.lexists("/" + d)]
    assert seen["root"] == sorted(system + ["dev", "proc", "sandbox", "tmp"] + _prefix_roots())
    assert seen["tmp"] == [] and seen["shm"] == []
    assert seen["exists"] == [False] * 4
    assert len(seen["pids"]) <= 2  # bwrap's init and the interpreter: none of the host's


def _prefix_roots() -> list[str]:
    """The top-level dir bwrap adds for an interpreter installed outside /usr."""
    prefix = os.path.dirname(os.path.dirname(interpreter() or ""))
    return [] if prefix.startswith("/usr") else [prefix.split("/")[1]]

"""Code verification in the local sandbox: HumanEval ground truth and escape attempts."""

from __future__ import annotations

import ast
import glob
import os
import re
import signal

import pytest

from aha.sandbox import SandboxLimits, isolation, run_many, run_python
from aha.tasks.base import Problem
from aha.tasks.code import CodeTask, extract_code

FAST = SandboxLimits(timeout_s=4, cpu_s=3)
MODES = [
    pytest.param(True, id="bwrap", marks=pytest.mark.skipif(not isolation()["bwrap"], reason="no bubblewrap here")),
    pytest.param(False, id="fallback",
                 marks=pytest.mark.skipif(not isolation()["unshare"], reason="no namespaces here")),
]


@pytest.fixture(scope="module")
def humaneval():
    return CodeTask().problems("test", 0, 0)


def corrupt(solution: str) -> str:
    """Every `return X` returns a different value: bools flip, numbers +1, sequences grow."""
    helper = ("def _corrupt(v):\n"
              "    if isinstance(v, bool): return not v\n"
              "    if isinstance(v, (int, float)): return v + 1\n"
              "    if isinstance(v, str): return v + 'x'\n"
              "    if isinstance(v, list): return v + [None]\n"
              "    if isinstance(v, tuple): return v + (None,)\n"
              "    return 0 if v is None else None\n")
    body = re.sub(r"^(\s*)return\b(.*)$", lambda m: f"{m.group(1)}return _corrupt(({m.group(2).strip() or 'None'}))",
                  solution, flags=re.MULTILINE)
    return body + "\n\n" + helper


@pytest.mark.parametrize("bwrap", MODES)
def test_all_canonical_solutions_pass_and_corrupted_fail(humaneval, bwrap):
    task = CodeTask(limits=SandboxLimits(timeout_s=15, cpu_s=10), bwrap=bwrap)
    good = task.verify_many([p.answer for p in humaneval], humaneval)
    assert [p.id for p, (r, _) in zip(humaneval, good) if r != 1.0] == []
    bad = task.verify_many([corrupt(p.answer) for p in humaneval], humaneval)
    assert [p.id for p, (r, _) in zip(humaneval, bad) if r != 0.0] == []


def test_completion_forms(humaneval):
    task, problem = CodeTask(), humaneval[2]  # truncate_number
    body = problem.answer
    full_def = "def truncate_number(number: float) -> float:\n" + body
    assert task.verify(f"Sure:\n```python\n{body}```\nDone.", problem)[0] == 1.0
    assert task.verify(f"```python\n{full_def}\n```", problem)[0] == 1.0
    assert task.verify("```python\n    return 0.0\n```", problem)[0] == 0.0
    assert task.verify(None, problem) == (0.0, {"reason": "no answer"})
    assert extract_code("no fence") == "no fence"


def _problem() -> Problem:
    meta = {"prompt": "", "test": "def check(candidate):\n    assert candidate() == 1\n", "entry_point": "f"}
    return Problem(question="", answer="", id="escape", meta=meta)


# Each program, if its escape worked, would go on to define a correct `f` and pass the tests.
ESCAPES = {
    "socket_connect": "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)",
    "socket_raw": "import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', 22))",
    "dns": "import socket\nsocket.gethostbyname('example.com')",
    "urllib": "import urllib.request\nurllib.request.urlopen('http://example.com', timeout=2)",
    "write_outside": "open({outside!r}, 'w').write('pwned')",
    "write_tmp": "open('/tmp/aha_sandbox_escape', 'w').write('pwned')",
    "delete_file": "import os\nos.remove({sentinel!r})",
    "delete_tree": "import shutil\nshutil.rmtree({sentinel_dir!r})",
    "read_ssh": "print(open(os.path.expanduser('~root/.ssh/id_rsa')).read())",
    "read_passwd_shadow": "print(open('/etc/shadow').read())",
    "env_secret": "import os\nassert os.environ['AHA_TEST_SECRET']",
    "proc_environ": "print(open('/proc/%d/environ' % os.getppid()).read())",
    "fork_bomb": "while True:\n    os.fork()",
    "subprocess": "import subprocess\nsubprocess.run(['sh', '-c', 'echo pwned > /tmp/aha_sandbox_escape'])",
    "os_system": "os.system('touch /tmp/aha_sandbox_escape')",
    "memory_bomb": "x = bytearray(8 * 2**30)",
    "memory_grow": "x = []\nwhile True:\n    x.append(' ' * 2**24)",
    "infinite_loop": "while True:\n    pass",
    "sleep_forever": "import time\ntime.sleep(3600)",
    "stdout_1gb": "import sys\nfor _ in range(1024):\n    sys.stdout.write('x' * 2**20)",
    "kill_parent": "os.kill(os.getppid(), 9)",
    "kill_all": "os.kill(-1, 9)",
    "raise_limits": "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (10**6, 10**6))",
    "ctypes": "import ctypes\nctypes.CDLL(None).system(b'touch /tmp/aha_sandbox_escape')",
    "exit_early": "os._exit(0)",
    "sys_exit": "import sys\nsys.exit(0)",
    "chdir_write": "os.chdir('/')\nopen('aha_sandbox_escape', 'w').write('x')",
}


@pytest.fixture
def targets(tmp_path):
    sentinel = tmp_path / "keep" / "sentinel.txt"
    sentinel.parent.mkdir()
    sentinel.write_text("keep me")
    return {"outside": str(tmp_path / "outside.txt"), "sentinel": str(sentinel), "sentinel_dir": str(sentinel.parent)}


@pytest.mark.parametrize("bwrap", MODES)
def test_escape_attempts_are_contained_and_score_zero(targets, monkeypatch, bwrap):
    assert len(ESCAPES) >= 20
    monkeypatch.setenv("AHA_TEST_SECRET", "hunter2")
    task = CodeTask(limits=FAST, bwrap=bwrap)
    answers = ["import os\n" + code.format(**targets) + "\n\ndef f():\n    return 1\n" for code in ESCAPES.values()]
    results = task.verify_many(answers, [_problem()] * len(answers))
    scored = {name: r for name, (r, _) in zip(ESCAPES, results)}
    assert scored == {name: 0.0 for name in ESCAPES}, {n: i for n, (r, i) in zip(ESCAPES, results) if r}
    assert open(targets["sentinel"]).read() == "keep me"
    assert not os.path.exists(targets["outside"]) and not os.path.exists("/aha_sandbox_escape")
    assert not os.path.exists("/tmp/aha_sandbox_escape")
    assert task.verify("def f():\n    return 1\n", _problem())[0] == 1.0  # and honest code still passes



@pytest.mark.parametrize("bwrap", MODES)
def test_kernel_walls_hold_without_the_audit_hook(targets, bwrap):
    """The audit hook off: the namespaces, the uid and the rlimits alone still contain these."""
    programs = {
        "socket": "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)",
        "fork_bomb": "import os\nwhile True:\n    os.fork()",
        "memory": "x = bytearray(8 * 2**30)",
        "cpu": "while True:\n    pass",
        "raise_limits": "import resource\nresource.setrlimit(resource.RLIMIT_AS, (2**40, 2**40))",
        "delete": f"import os\nos.remove({targets['sentinel']!r})",
        "stdout": "import sys\nfor _ in range(1024):\n    sys.stdout.write('x' * 2**20)",
    }
    for name, code in programs.items():
        result = run_python(code, FAST, audit_hook=False, bwrap=bwrap)
        assert not result.passed, (name, result)
    assert open(targets["sentinel"]).read() == "keep me"


@pytest.mark.parametrize("bwrap", MODES)
def test_output_is_capped_and_stray_children_die(bwrap):
    result = run_python("print('a' * 100_000)", SandboxLimits(output_chars=1000), bwrap=bwrap)
    assert result.passed and len(result.stdout) == 1000
    assert result.walls == ("bwrap" if bwrap else "unshare")
    # A grandchild that leaves the session would outlive a plain killpg; the pid namespace ends it.
    code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n")
    result = run_python(code, FAST, audit_hook=False, bwrap=bwrap)
    assert result.passed
    leftover = os.popen("pgrep -f -a 'prelude.py (script|serve)' || true").read().strip()
    assert leftover == ""


def test_run_many_parallel():
    results = run_many([f"assert {i} + 1 == {i + 1}" for i in range(8)] + ["assert False"], FAST)
    assert [r.passed for r in results] == [True] * 8 + [False]


def test_run_python_reports_an_early_exit():
    """Not a verdict on adversarial code (see runner's doc), but an honest early exit shows."""
    assert run_python("import sys\nsys.exit(0)\nprint('never')", FAST).status == "exited before the end"
    assert run_python("print('ok')", FAST).status == "passed"


def test_unwritable_or_uncompilable_answers_score_zero(humaneval):
    task, problem = CodeTask(limits=FAST), humaneval[2]
    before = set(glob.glob("/tmp/aha-sandbox-*"))
    for answer in ("    return 0.0\ud800\n", "    return 0.0\x00\n", "def truncate_number(", "\t\x1b" * 1000):
        score, info = task.verify(answer, problem)
        assert score == 0.0 and info["reason"] != "correct", answer[:20]
    assert set(glob.glob("/tmp/aha-sandbox-*")) <= before  # nothing left behind


def test_verify_returns_zero_when_the_sandbox_itself_fails(humaneval, monkeypatch):
    task, problem = CodeTask(limits=FAST), humaneval[2]

    def broken(*args, **kwargs):
        raise OSError("no such file: bwrap")

    monkeypatch.setattr("aha.tasks.code.run_judged", broken)
    score, info = task.verify(problem.answer, problem)
    assert score == 0.0 and info["reason"].startswith("sandbox error: OSError")


def test_isolation_reports_the_walls_and_the_env_turns_bubblewrap_off(monkeypatch):
    walls = isolation()
    assert set(walls) >= {"bwrap", "unshare", "drop_privileges", "audit_hook"}
    assert run_python("pass", FAST).walls == ("bwrap" if walls["bwrap"] else "unshare" if walls["unshare"] else "none")
    monkeypatch.setenv("AHA_SANDBOX_BWRAP", "0")
    assert run_python("pass", FAST).walls != "bwrap"

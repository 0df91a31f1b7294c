"""HumanEval-style code problems, verified by running the tests in the local sandbox.

A problem holds the function `prompt` (signature + docstring), a `test` defining
`check(candidate)` and the `entry_point`. The candidate's program is `prompt + completion` (the
completion may be the function body or a whole `def`: a docstring-only stub followed by a full
definition is valid Python, the second wins); it runs in the sandbox and only answers calls.
The tests, `prompt + test`, run in a separate judge process that calls `check` with a proxy
for the entry point and alone decides (`aha.sandbox.run_judged`): a completion cannot read
the expected values, patch the tests, fake an always-equal answer or forge the verdict.
"""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from aha.sandbox import SandboxLimits, SandboxResult, run_judged
from aha.tasks.base import Problem, Task, register_task
from aha.tasks.records import RecordError, field, packaged, read_records, seeded_sample

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_code(text: str) -> str:
    """The last ```python fenced block if there is one, else the text as it is.

    >>> extract_code("Here:\\n```python\\n    return 1\\n```")
    '    return 1\\n'
    """
    blocks = _FENCE.findall(text)
    return blocks[-1] if blocks else text


def _text(row: dict, name: str, where: str) -> str:
    # Not `as_text`: code keeps its whitespace (the prompt's final newline starts the body).
    value = field(row, (name,), where)
    if not isinstance(value, str):
        raise RecordError(f"{where}: field {name!r} must be text, got {type(value).__name__}")
    return value


def build_program(prompt: str, completion: str) -> str:
    """The candidate's side: the prompt (its imports and helpers) and the completion."""
    code = completion if completion.startswith((" ", "\t", "\n")) else "\n" + completion
    return f"{prompt}{code}\n"


def build_tests(prompt: str, test: str) -> str:
    """The judge's side: the prompt again (the tests may use its helpers) and `check`."""
    return f"{prompt}\n\n{test}\n"


@register_task("humaneval")
class CodeTask(Task):
    """HumanEval (164 problems, test split only) or a user's file of the same shape (`path=`)."""

    def __init__(self, path: str | None = None, limits: SandboxLimits | None = None, workers: int | None = None,
                 bwrap: bool | None = None):
        self.path = Path(path) if path else packaged("humaneval/HumanEval.jsonl.gz")
        self.limits = limits or SandboxLimits()
        self.workers = workers
        self.bwrap = bwrap  # None: bubblewrap when the host has it
        self._problems: list[Problem] | None = None

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        """HumanEval is one set; every split reads it (n <= 0: all, in file order)."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return seeded_sample(self._load(), n, seed)

    def _load(self) -> list[Problem]:
        if self._problems is None:
            out = []
            for line, row in read_records(self.path):
                where = f"{self.path}, line {line}"
                prompt = _text(row, "prompt", where)
                meta = {"prompt": prompt, "test": _text(row, "test", where), "entry_point": _text(row, "entry_point", where)}
                solution = row.get("canonical_solution") or ""
                question = f"Complete the following Python function.\n```python\n{prompt}```"
                out.append(Problem(question=question, answer=solution, id=str(row.get("task_id", line)), meta=meta))
            self._problems = out
        return self._problems

    def program(self, answer: str, problem: Problem) -> str:
        m = problem.meta
        return build_program(m["prompt"], extract_code(answer))

    def run(self, answer: str, problem: Problem) -> SandboxResult:
        m = problem.meta
        return run_judged(self.program(answer, problem), build_tests(m["prompt"], m["test"]), m["entry_point"],
                          self.limits, bwrap=self.bwrap)

    def verify(self, answer: str | None, problem: Problem) -> tuple[float, dict]:
        if answer is None or not answer.strip():
            return 0.0, {"reason": "no answer"}
        try:
            result = self.run(answer, problem)
        except (OSError, ValueError, subprocess.SubprocessError) as e:  # the sandbox failed, not the answer
            return 0.0, {"reason": f"sandbox error: {type(e).__name__}: {e}"[:300]}
        info = {"reason": "correct" if result.passed else result.status, "seconds": round(result.seconds, 3)}
        if not result.passed:
            info["detail"] = result.detail[-300:]
            info["stderr_tail"] = result.stderr[-300:]
        return float(result.passed), info

    def verify_many(self, answers: Sequence[str | None], problems: Sequence[Problem]) -> list[tuple[float, dict]]:
        """`verify` over a batch, one sandbox per completion, in parallel across cores."""
        with ThreadPoolExecutor(max_workers=self.workers or None) as threads:
            return list(threads.map(self.verify, answers, problems))

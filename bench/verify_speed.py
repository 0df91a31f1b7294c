"""Completions verified per second: math (MATH-500 references + rewritings + wrong answers) and
code (HumanEval canonical + corrupted solutions), on this machine.

    PYTHONPATH=src python bench/verify_speed.py
"""

from __future__ import annotations

import os
import time

from aha.sandbox import isolation
from aha.tasks.code import CodeTask
from aha.tasks.math import Math500Task
from aha.verify.math_answer import math_pool


def bench_math() -> None:
    task = Math500Task()
    problems = task.problems("test", 0, 0)
    math_pool().warm()
    answers = [p.answer for p in problems]  # exact: the fast path
    boxed = [f"The answer is $\\boxed{{{a}}}$." for a in answers]
    wrong = answers[1:] + answers[:1]  # another problem's reference: mostly math-verify
    for label, preds in (("exact", answers), ("boxed in text", boxed), ("wrong (other reference)", wrong)):
        start = time.monotonic()
        results = task.verify_many(preds, problems)
        seconds = time.monotonic() - start
        mean = sum(r for r, _ in results) / len(results)
        print(f"math  {label:<24} {len(preds) / seconds:8.0f} completions/s  ({len(preds)} in {seconds:.2f} s, reward mean {mean:.3f})")


def bench_code() -> None:
    """Under bubblewrap when the host has it, and under the fallback walls (unshare + setpriv)."""
    for bwrap in ([True] if isolation()["bwrap"] else []) + [False]:
        task = CodeTask(bwrap=bwrap)
        problems = task.problems("test", 0, 0)
        walls = "bwrap" if bwrap else "fallback"
        for label, preds in (("canonical", [p.answer for p in problems]),
                             ("return None", ["    return None\n"] * len(problems))):
            start = time.monotonic()
            results = task.verify_many(preds, problems)
            seconds = time.monotonic() - start
            mean = sum(r for r, _ in results) / len(results)
            print(f"code  {label + ', ' + walls:<24} {len(preds) / seconds:8.1f} completions/s  "
                  f"({len(preds)} in {seconds:.2f} s, pass rate {mean:.3f})")


if __name__ == "__main__":
    print(f"{os.cpu_count()} CPU cores; math pool {math_pool().max_workers} workers")
    bench_math()
    bench_code()

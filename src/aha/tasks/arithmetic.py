"""Multi-digit addition with column-by-column traces.

In the corpus, direct answers are usually *wrong* (the true sum ± noise) and step-by-step work
carries injected slips, some caught by a check: if direct answers were reliable, a tiny model would
learn to answer directly and RL would have no longer reasoning to amplify.
"""

from __future__ import annotations

import random
import re

from aha.tasks.base import Problem, Task, in_test_split, register_task

_INT = re.compile(r"-?[0-9]{1,30}")  # ASCII digits only; bounded so int() stays cheap


@register_task("arithmetic")
class ArithmeticTask(Task):
    reflection_markers = ("wait", "check", "ok")

    def __init__(self, digits: int = 3, mix: tuple[float, float, float] = (0.6, 0.3, 0.1), slip: float = 0.4):
        if not 1 <= digits <= 9:
            raise ValueError(f"digits must be 1..9, got {digits}")
        self.digits, self.mix, self.slip = digits, tuple(mix), slip

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        rng, out, low, high = random.Random(seed), [], 10 ** (self.digits - 1), 10**self.digits - 1
        while len(out) < n:
            a, b = rng.randint(low, high), rng.randint(low, high)
            question = f"{a} + {b}"
            if in_test_split(question) == (split == "test"):
                out.append(Problem(question, str(a + b), id=f"add-{a}-{b}", meta={"a": a, "b": b}))
        return out

    def verify(self, answer: str | None, problem: Problem) -> tuple[float, dict]:
        if answer is None:
            return 0.0, {"reason": "no answer"}
        text = answer.strip().replace(",", "")
        if len(text) > 40 or _INT.fullmatch(text) is None:
            return 0.0, {"reason": "answer is not an integer"}
        correct = int(text) == int(problem.answer)
        return float(correct), {"reason": "correct" if correct else "wrong value"}

    def corpus_document(self, problem: Problem, rng: random.Random) -> str:
        a, b = problem.meta["a"], problem.meta["b"]
        style = rng.choices(("direct", "steps", "check"), weights=self.mix)[0]
        if style == "direct":
            guess = a + b + rng.choice([-10, -1, 1, 10, 0, 100])  # right only 1 time in 6
            return f" <think>{guess}</think> <answer>{guess}</answer>"
        work, total = column_steps(a, b, rng, self.slip)
        if style == "check" and total != a + b:
            redo, fixed = column_steps(a, b, rng, 0.0)
            work += f" check {total}-{b}={total - b} not {a}, wait, {redo}"
            total = fixed
        elif style == "check":
            work += f" check {total}-{b}={a} ok"
        return f" <think>{work}</think> <answer>{total}</answer>"


def column_steps(a: int, b: int, rng: random.Random, slip: float) -> tuple[str, int]:
    """Schoolbook addition from the units up; with probability `slip` one column is off by one."""
    xs, ys = str(a)[::-1], str(b)[::-1]
    bad_column = rng.randrange(max(len(xs), len(ys))) if rng.random() < slip else -1
    carry, digits, steps = 0, [], []
    for i in range(max(len(xs), len(ys))):
        x, y = int(xs[i]) if i < len(xs) else 0, int(ys[i]) if i < len(ys) else 0
        s = x + y + carry + (1 if i == bad_column else 0)
        steps.append(f"{x}+{y}+{carry}={s}")
        digits.append(s % 10)
        carry = s // 10
    if carry:
        digits.append(carry)
    total = int("".join(map(str, reversed(digits))))
    return ", ".join(steps) + f" so {total}", total

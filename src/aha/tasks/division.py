"""Quotient digit of a 3-digit ÷ 2-digit division: `645 // 86` → `7`.

Why this is the default R1-Zero task in miniature: the natural first guess, the *trial quotient*
(leading digits divided, `64 // 8 = 8`), is a fixed rule that is often too high, and a tiny model
cannot train that away — but it can learn to *check* a guess (`8*86=688>645`) and revise it. So
checking keeps paying for the whole run, and the rise in reflection lasts instead of fading.
"""

from __future__ import annotations

import random
import re

from aha.tasks.base import Problem, Task, in_test_split, register_task

_INT = re.compile(r"-?[0-9]{1,12}")  # ASCII digits only; bounded so int() stays cheap


def trial_quotient(a: int, b: int) -> int:
    """The schoolbook first guess: leading digits of `a` over the leading digit of `b`, capped at 9."""
    return min(9, (a // 10) // (b // 10))


def _space() -> list[tuple[int, int]]:
    # Every (a, b) with a 3-digit dividend, 2-digit divisor and a one-digit quotient.
    return [(a, b) for b in range(10, 100) for a in range(100, 10 * b)]


@register_task("division")
class DivisionTask(Task):
    """`hard_share` is the share of problems whose trial quotient is wrong (0.36 if drawn uniformly)."""

    reflection_markers = ("wait", "ok", "too high")

    def __init__(self, hard_share: float = 0.6, mix: tuple[float, float, float] = (0.45, 0.45, 0.10)):
        if not 0.0 <= hard_share <= 1.0:
            raise ValueError(f"hard_share must be in [0, 1], got {hard_share}")
        if len(mix) != 3 or min(mix) < 0 or abs(sum(mix) - 1.0) > 1e-6:
            raise ValueError(f"mix must be three non-negative shares (direct, single pass, check) summing to 1, got {mix}")
        self.hard_share = hard_share
        self.mix = tuple(mix)

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        pool = [ab for ab in _space() if in_test_split(f"{ab[0]}//{ab[1]}") == (split == "test")]
        hard = [ab for ab in pool if trial_quotient(*ab) != ab[0] // ab[1]]
        easy = [ab for ab in pool if trial_quotient(*ab) == ab[0] // ab[1]]
        rng = random.Random(seed)
        picked = [rng.choice(hard) if rng.random() < self.hard_share else rng.choice(easy) for _ in range(n)]
        return [self._problem(a, b) for a, b in picked]

    @staticmethod
    def _problem(a: int, b: int) -> Problem:
        return Problem(question=f"{a} // {b}", answer=str(a // b), id=f"div-{a}-{b}", meta={"a": a, "b": b})

    def verify(self, answer: str | None, problem: Problem) -> tuple[float, dict]:
        if answer is None:
            return 0.0, {"reason": "no answer"}
        match = _INT.fullmatch(answer.strip())
        if match is None:
            return 0.0, {"reason": "answer is not an integer", "answer": answer[:50]}
        correct = int(match.group()) == int(problem.answer)
        return float(correct), {"reason": "correct" if correct else "wrong value"}

    def corpus_document(self, problem: Problem, rng: random.Random) -> str:
        a, b = problem.meta["a"], problem.meta["b"]
        guess, truth = trial_quotient(a, b), a // b
        style = rng.choices(("direct", "single", "check"), weights=self.mix)[0]
        if style == "direct":
            think, final = f"guess {guess}", guess
        elif style == "single":
            think, final = f"{guess}*{b}={guess * b}", guess
        else:
            think, final = check_trace(a, b), truth
        return f" <think>{think}</think> <answer>{final}</answer>"


    def cold_start_completion(self, problem: Problem) -> str:
        """One language, no code, a check of the first guess stepping down until the product fits."""
        a, b = problem.meta["a"], problem.meta["b"]
        return f" <think>{check_trace(a, b)}</think> <answer>{a // b}</answer>"

    def is_self_correction(self, row: dict, markers=()) -> bool:
        """A sample whose check rejected a too-high guess and whose revised answer is right: the
        division task's own "aha" transcript (used by the report's milestones)."""
        return bool(row.get("accuracy")) and "too high, wait" in row.get("completion", "")

    def corpus_facts(self, rng: random.Random) -> str:
        facts = []
        for _ in range(6):
            kind = rng.random()
            if kind < 0.5:  # the products a check computes
                q, b = rng.randint(1, 9), rng.randint(10, 99)
                facts.append(f"{q}*{b}={q * b}")
            elif kind < 0.75:  # the leading-digit division behind the trial quotient
                x, y = rng.randint(10, 99), rng.randint(1, 9)
                facts.append(f"{x}//{y}={x // y}")
            else:  # comparisons of the sizes a check compares
                p, a = rng.randint(10, 999), rng.randint(100, 999)
                facts.append(f"{p}>{a}" if p > a else f"{p}<={a}")
        return " ".join(facts)


def check_trace(a: int, b: int) -> str:
    """Guess, compare the product with the dividend, step down until it fits, then confirm."""
    q = trial_quotient(a, b)
    steps = []
    while q * b > a:
        steps.append(f"{q}*{b}={q * b}>{a} too high, wait,")
        q -= 1
    steps.append(f"{q}*{b}={q * b}<={a} ok")
    return " ".join(steps)

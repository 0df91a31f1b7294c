"""Math verifier: extraction, equivalence on all of MATH-500, and bounded time on hostile input."""

from __future__ import annotations

import functools
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import pytest

from aha.tasks.math import Amc23Task, Math500Task
from aha.tasks.gsm8k import Gsm8kTask
from aha.verify.math_answer import _layout_free, extract_answer, judge_math, last_boxed, math_pool
from aha.verify.pool import BoundedPool


@pytest.fixture(scope="module")
def math500():
    math_pool().warm()  # start-up (sympy import) is not what the time bounds are about
    return Math500Task().problems("test", 0, 0)


def test_last_boxed_nested_and_extraction():
    assert last_boxed(r"a \boxed{1} then \boxed{\frac{1}{\sqrt{2}}} end") == r"\frac{1}{\sqrt{2}}"
    assert last_boxed(r"\boxed{\left( 3, \frac{\pi}{2} \right)}") == r"\left( 3, \frac{\pi}{2} \right)"
    assert last_boxed(r"\boxed{unclosed") is None
    assert extract_answer("$\\frac{1}{2}$.") == "\\frac{1}{2}"
    assert extract_answer("  42 ") == "42"


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("27", "27.0"), ("1,000", "1000"), ("1000", "1,000"), ("0.5", r"\frac12"), ("14/3", r"\frac{14}{3}"),
        (r"(3, \pi/2)", r"\left( 3, \frac{\pi}{2} \right)"), ("[1, 2)", "[1,2)"), (r"\{2, 1\}", r"\{1,2\}"),
        ("C", r"\text{(C)}"), ("(C)", r"\text{(C)}"), ("10\\%", "10\\%"), ("0.1", "10\\%"), (r"\sqrt{8}", r"2\sqrt{2}"),
        (r"\boxed{\dfrac{\sqrt3}{2}}", r"\frac{\sqrt{3}}{2}"), ("025", "25"), ("$x^2+1$", "1+x^2"),
    ],
)
def test_equivalent_forms(pred, gold):
    reward, info = judge_math(pred, gold)
    assert reward == 1.0, info


@pytest.mark.parametrize("pred, gold", [("28", "27.0"), ("(2,1)", "(1,2)"), ("1/3", "0.33"), ("B", r"\text{(C)}"), ("x+1", "x-1")])
def test_different_values(pred, gold):
    assert judge_math(pred, gold)[0] == 0.0


def test_amc_and_gsm8k_number_forms():
    amc = Amc23Task().problems("test", 0, 0)[0]
    assert amc.answer == "27"
    assert Amc23Task().verify("27.0", amc)[0] == 1.0 and Amc23Task().verify(r"\boxed{27}", amc)[0] == 1.0
    gsm = Gsm8kTask()
    problem = next(p for p in gsm.problems("test", 0, 0) if len(p.answer) >= 4)
    with_commas = f"{int(problem.answer):,}"
    assert "," in with_commas and gsm.verify(with_commas, problem)[0] == 1.0


def rewrite(answer: str) -> str:
    """A mechanical, value-preserving rewriting of a LaTeX answer."""
    out = answer.replace(r"\dfrac", r"\frac").replace(r"\tfrac", r"\frac")
    simple_frac = re.compile(r"\\frac\{([^{}]*)\}\{([^{}]*)\}")
    while simple_frac.search(out):
        out = simple_frac.sub(r"((\1)/(\2))", out)
    out = out.replace(r"\left", "").replace(r"\right", "") if r"\left" in out else out.replace("(", r"\left(").replace(")", r"\right)")
    if re.fullmatch(r"-?\d+\.\d+", out):
        out = r"\frac{%d}{%d}" % Fraction(out).as_integer_ratio()
    elif re.fullmatch(r"-?\d+", out):
        out = out + ".0"
    return "$ " + out.replace(",", ", ") + " $"


def _value_text(answer: str) -> str:
    # `x=5` and `5` are the same value (the only such pair of neighbours in MATH-500), so the
    # "another problem's reference" is picked among texts that differ after dropping `x=`.
    return re.sub(r"^[a-zA-Z]\s*=\s*", "", _layout_free(answer))


def test_math500_self_rewrite_and_other(math500):
    golds = [p.answer for p in math500]
    # This test is about which forms are equal, not speed (the timeout has its own test): a roomy
    # budget keeps a loaded machine from turning slow sympy calls into false failures.
    judge = functools.partial(judge_math, timeout=10.0)
    with ThreadPoolExecutor(max_workers=math_pool().max_workers) as threads:
        self_ok = list(threads.map(lambda g: judge(g, g)[0], golds))
        rewritten = [rewrite(g) for g in golds]
        rewrite_ok = list(threads.map(lambda pair: judge(*pair), zip(rewritten, golds)))
        others = [next(golds[j % 500] for j in range(i + 1, i + 500) if _value_text(golds[j % 500]) != _value_text(g))
                  for i, g in enumerate(golds)]
        other_ok = list(threads.map(lambda pair: judge(*pair), zip(others, golds)))
    assert all(r == 1.0 for r in self_ok)
    failed = [(g, w, info) for g, w, (r, info) in zip(golds, rewritten, rewrite_ok) if r != 1.0]
    assert not failed, failed[:10]
    # The rewriting really changes the text (not only spaces and `$`) for most answers.
    changed = sum(_layout_free(w) != _layout_free(g) for g, w in zip(golds, rewritten))
    assert changed >= 350, changed
    confused = [(g, o) for g, o, (r, _) in zip(golds, others, other_ok) if r != 0.0]
    # Two references that differ as text but not in value would be fine; none occur in MATH-500.
    assert not confused, confused


def test_timeout_from_thread_scores_zero_and_pool_recovers():
    pool = BoundedPool(max_workers=1, preload=["math_verify"])
    result = {}
    thread = threading.Thread(target=lambda: result.update(v=judge_math(r"\boxed{2^{2^{2^{2^{2^{2}}}}}}", "3", timeout=0.5, pool=pool)))
    start = time.monotonic()
    thread.start()
    thread.join()
    reward, info = result["v"]
    assert reward == 0.0 and "timeout" in info["reason"] and time.monotonic() - start < 2.5
    assert pool.restarts == 1
    assert judge_math(r"\sqrt{8}", r"2\sqrt{2}", pool=pool)[0] == 1.0  # a fresh worker took over
    pool.close()


def test_worker_recycling():
    pool = BoundedPool(max_workers=1, recycle_after=3)
    pids = [pool.call(_pid).value for _ in range(7)]
    assert len(set(pids)) == 3  # 3 + 3 + 1 jobs
    pool.close()


def _pid() -> int:
    import os

    return os.getpid()


def hostile_inputs() -> list[str]:
    towers = ["2^" * k + "2" for k in (3, 5, 8, 20)] + ["{" * 0 + "2^{" * k + "2" + "}" * k for k in (4, 6, 10)]
    big = ["10^10^10^10", r"10^{10^{10^{10}}}", r"9^{9^{9^{9}}}", r"(10^{100})!", r"100000!", r"\binom{10^{10}}{10^5}",
           r"\sqrt[10^{10}]{2}", r"\sum_{n=1}^{10^{12}} n^n", r"\prod_{k=1}^{10^9} k", r"e^{e^{e^{e^{10}}}}",
           r"\lim_{n\to\infty} n^{n^n}", "1" * 5000, "9" * 200 + "^" + "9" * 200, r"10^{-10^{10}}", r"\int_0^{10^{10}} x^{x} dx",
           r"\frac{10^{10^{10}}}{10^{10^{9}}}", r"(2^{64})^{2^{64}}", r"\gamma^{\gamma^{\gamma^{\gamma^{99}}}}"]
    huge = ["x" * 2**20, r"\boxed{" + "1" * 2**20 + "}", "(" * 100_000 + ")" * 100_000, r"\frac{1}{2}" * 20_000]
    nested = [r"\frac{1}{" * k + "2" + "}" * k for k in (10, 50, 100, 400)] + ["(" * k + "1" + ")" * k for k in (50, 300, 1000)]
    nested += [r"\boxed{" * 200 + "1" + "}" * 200, r"\sqrt{" * 100 + "2" + "}" * 100]
    invalid = [r"\frac{", r"}}}}{{", r"\begin{matrix} 1 & 2", r"\left( 1, 2", r"\frac{1}{0}", r"0/0", r"\\\\\\", r"$$$$",
               "\x00\x01\x02", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ∞∞∞", r"\undefinedcommand{3}", r"\text{" + "a" * 1000, r"1 = = = 2",
               r"\{\{\{\{", r"[1, 2, 3", r"\sqrt{-1}^{\infty}", r"\infty - \infty", "NaN", "inf", r"\mathbf{\mathbf{\mathbf{x"]
    return towers + big + huge + nested + invalid


def test_hostile_inputs_return_within_2s_from_worker_threads():
    inputs = hostile_inputs()
    assert len(inputs) >= 50
    math_pool().warm()

    def timed(pred):
        start = time.monotonic()
        reward, info = judge_math(pred, "7")
        return time.monotonic() - start, reward, info

    # As many threads as workers: each call's time is its own, not a queue's.
    with ThreadPoolExecutor(max_workers=math_pool().max_workers) as threads:
        results = list(threads.map(timed, inputs))
    slow = [(inputs[i][:40], round(s, 2)) for i, (s, _, _) in enumerate(results) if s >= 2.0]
    assert not slow, slow
    assert all(reward == 0.0 for _, reward, _ in results)
    assert all(info["reason"] for _, _, info in results)


# What a human grader accepts beyond math-verify's own forms: units, currency, scientific notation,
# a short sentence around the value — and what they refuse: alternatives for a single answer.
GRADER_ACCEPTS = [
    ("18 dollars", "18"), ("$18", "18"), (r"\$18.50", "18.5"), ("18 cm", "18"), ("5 hours", "5"),
    ("12 square meters", "12"), ("60 km/h", "60"), ("45 miles per hour", "45"), (r"15\mbox{ cm}^2", "15"),
    ("864", r"864 \mbox{ inches}^2"), ("5.4 cents", r"5.4 \text{ cents}"), ("1,250 dollars", "1250"),
    (r"\text{18 dollars}", "18"), ("x = 7 hours", "7"), ("18 m^2", "18"), (r"18\,\mathrm{cm}^{2}", "18"),
    ("1.5e3", "1500"), ("1.5E+03", "1500"), (r"1.5 \times 10^3", "1500"), ("1.5 × 10^3", "1500"),
    (r"1.5 \cdot 10^{3}", "1500"), ("2.5e-2", "0.025"), (r"3 \times 10^{8}", "300000000"), ("4.2e1 cm", "42"),
    ("The answer is 42.", "42"), ("So x = 7", "7"), ("Answer: 42", "42"), (r"The final answer is $\frac{3}{4}$.", r"\frac34"),
    ("Therefore, the total is $18.", "18"), ("So the answer is 5 hours.", "5"), ("the answer is: 1,000", "1000"),
    (r"The answer is $\frac{\sqrt{2}}{2}$.", r"\frac{\sqrt2}{2}"), ("(1, 2)", r"\left(1, 2\right)"), (r"\{2, 1\}", r"\{1, 2\}"),
    ("So, she has 18 apples left.", "18"), ("The total cost is $18.", "18"), ("**18**", "18"), ("18 (dollars)", "18"),
]
GRADER_REJECTS = [
    ("7 or 8", "7"), ("either 3 or 4", "3"), ("7, 8", "7"), ("7 and 8", "8"), ("8 or more", "8"),
    ("The answer is 7 or 8.", "7"), ("x = 7 or x = 8", "7"), ("18 dollars or 19 dollars", "18"), ("3 cm or 4 cm", "3"),
    ("17 dollars", "18"), ("18 cm", "19"), ("1.5e3", "150"), (r"1.5 \times 10^4", "1500"), ("The answer is 41.", "42"),
    ("$19", "18"), ("18 dollars", "180"), ("2.5e-3", "0.025"), ("(2, 1)", "(1, 2)"), ("[1, 2)", "[1, 2]"),
    ("18 thousand", "18"), ("18k", "18"), ("18 squared", "18"), ("She has at most 18 apples.", "18"),
    ("It costs more than 18 dollars.", "18"), ("18 over 5", "18"),
]


@pytest.mark.parametrize("pred, gold", GRADER_ACCEPTS)
def test_grader_accepts(pred, gold):
    reward, info = judge_math(pred, gold, timeout=5.0)
    assert reward == 1.0, info


@pytest.mark.parametrize("pred, gold", GRADER_REJECTS)
def test_grader_rejects(pred, gold):
    reward, info = judge_math(pred, gold, timeout=5.0)
    assert reward == 0.0, info

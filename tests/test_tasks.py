"""Synthetic tasks: generators, splits and verifiers, hostile answers included."""

import random
from fractions import Fraction

import pytest

from aha.tasks import get_task
from aha.tasks.base import Problem
from aha.tasks.countdown import ExpressionError, evaluate_expression, solve
from aha.tasks.division import check_trace, trial_quotient


@pytest.mark.parametrize("name", ["division", "arithmetic", "countdown"])
def test_splits_are_disjoint_and_seeded(name):
    task = get_task(name)
    train = task.problems("train", 300, seed=1)
    test = task.problems("test", 100, seed=1)
    assert {p.question for p in train}.isdisjoint({p.question for p in test})
    assert [p.question for p in task.problems("train", 50, seed=7)] == [p.question for p in task.problems("train", 50, seed=7)]
    with pytest.raises(ValueError, match="split"):
        task.problems("validation", 1, 0)


@pytest.mark.parametrize("name", ["division", "arithmetic", "countdown"])
def test_correct_corpus_traces_verify(name):
    # Traces in the corpus end in the reference answer unless they are deliberately wrong guesses.
    task, rng = get_task(name), random.Random(0)
    for problem in task.problems("train", 50, seed=2):
        doc = task.corpus_document(problem, rng)
        assert doc.strip().startswith("<think>") and doc.endswith("</answer>")
    assert task.verify(task.problems("test", 1, 0)[0].answer, task.problems("test", 1, 0)[0])[0] == 1.0


def test_unknown_task_lists_valid_ones():
    with pytest.raises(KeyError, match="valid tasks: .*division"):
        get_task("chess")


def test_trial_quotient_and_check_trace():
    assert trial_quotient(645, 86) == 8 and 645 // 86 == 7
    assert check_trace(645, 86) == "8*86=688>645 too high, wait, 7*86=602<=645 ok"
    assert check_trace(688, 86) == "8*86=688<=688 ok"
    assert trial_quotient(990, 10) == 9  # capped at one digit


def test_division_hard_share_controls_the_trial_quotient_error_rate():
    problems = get_task("division", hard_share=0.6).problems("train", 2000, seed=0)
    wrong = sum(trial_quotient(p.meta["a"], p.meta["b"]) != int(p.answer) for p in problems) / len(problems)
    assert 0.55 < wrong < 0.65
    with pytest.raises(ValueError, match="hard_share"):
        get_task("division", hard_share=1.5)


DIV = Problem("645 // 86", "7", meta={"a": 645, "b": 86})


@pytest.mark.parametrize("answer,reward", [
    ("7", 1.0), (" 7 ", 1.0), ("07", 1.0), ("8", 0.0), (None, 0.0), ("", 0.0), ("seven", 0.0), ("7.0", 0.0),
    ("9" * 5000, 0.0), ("-7", 0.0), ("７", 0.0), ("7\x00", 0.0),
])
def test_division_verifier(answer, reward):
    assert get_task("division").verify(answer, DIV)[0] == reward


CD = Problem("Using the numbers [3, 5, 7], create an equation that equals 22", "3*5+7",
             meta={"numbers": [3, 5, 7], "target": 22})


@pytest.mark.parametrize("answer,reward,reason", [
    ("3*5+7", 1.0, "correct"),
    ("7+5*3", 1.0, "correct"),
    ("(3*5)+7 = 22", 1.0, "correct"),
    ("3*5+7+0", 0.0, "uses numbers not given"),
    ("3*5+7*1", 0.0, "uses numbers not given"),
    ("5*5-3", 0.0, "uses numbers not given"),  # a number used twice
    ("3*5", 0.0, "evaluates to 15"),
    ("7/(5-5)", 0.0, "division by zero"),
    ("__import__('os').system('true')", 0.0, "not allowed"),
    ("3**5", 0.0, "not allowed"),
    ("9" * 300, 0.0, "longer than"),
    ("３*5+7", 0.0, "non-ASCII"),
    ("3*5+", 0.0, "not an arithmetic expression"),
    ("-3+5*5", 0.0, "not allowed"),
    ("22.0", 0.0, "not allowed"),
    (None, 0.0, "no answer"),
])
def test_countdown_verifier(answer, reward, reason):
    got, info = get_task("countdown").verify(answer, CD)
    assert got == reward and reason in info["reason"]


def test_countdown_evaluator_is_exact_and_safe():
    assert evaluate_expression("7/2*2")[0] == Fraction(7)
    assert evaluate_expression("(1+2)*3") == (Fraction(9), [1, 2, 3])
    with pytest.raises(ExpressionError):
        evaluate_expression("(lambda: 1)()")
    assert solve([3, 5, 7], 22) is not None and solve([1, 1], 100) is None


ADD = Problem("347 + 268", "615", meta={"a": 347, "b": 268})


@pytest.mark.parametrize("answer,reward", [("615", 1.0), ("6,15", 1.0), ("614", 0.0), ("1" * 100, 0.0), ("六一五", 0.0)])
def test_arithmetic_verifier(answer, reward):
    assert get_task("arithmetic").verify(answer, ADD)[0] == reward


def test_cold_start_rows_are_correct_readable_and_in_the_prompts_language():
    from aha.rewards.language import language_mixing_rate
    from aha.tasks.cold_start import cold_start_rows
    from aha.template import parse_response

    for name in ("division", "division_bilingual"):
        task = get_task(name)
        rows = cold_start_rows(task, 60, seed=3)
        assert rows == cold_start_rows(task, 60, seed=3)  # deterministic
        held_out = {p.question for p in task.problems("test", 400, seed=0)}
        by_id = {f"{name}:{p.id}": p for p in task.problems("train", 60, seed=3)}
        for row in rows:
            problem = by_id[row["prompt_id"]]
            parsed = parse_response(row["completion"])
            assert parsed.well_formed and problem.question not in held_out
            assert task.verify(parsed.answer, problem)[0] == 1.0
            assert language_mixing_rate(parsed.think, row["language"]) == 0.0
        if name == "division_bilingual":
            assert {r["language"] for r in rows} == {"en", "zh"}


def test_cold_start_rows_refuse_tasks_without_traces():
    from aha.tasks.cold_start import cold_start_rows

    with pytest.raises(ValueError, match="no synthetic cold-start traces"):
        cold_start_rows(get_task("gsm8k"), 3)

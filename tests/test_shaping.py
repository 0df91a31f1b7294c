"""Shaping rewards: DAPO overlong penalty, cosine length scaling, n-gram repetition."""

from __future__ import annotations

import doctest
import math

import pytest

import aha.rewards.shaping as shaping
from aha.rewards.base import REWARDS, combine
from aha.rewards.shaping import cosine_value, make_overlong_penalty, overlong_penalty, overlong_value, repetition_value
from aha.tasks.logic import KnightsKnavesTask


def test_docstring_examples_run():
    assert doctest.testmod(shaping).failed == 0


def test_registered():
    assert {"overlong", "cosine_length", "repetition"} <= set(REWARDS)


def test_overlong_reference_values():
    # DAPO eq. 13 with L_max = 20480, L_cache = 4096.
    assert overlong_value(16384, 20480, 4096) == 0.0
    assert overlong_value(18432, 20480, 4096) == -0.5
    assert overlong_value(20480, 20480, 4096) == -1.0
    assert overlong_value(30000, 20480, 4096) == -1.0
    assert make_overlong_penalty(100, 20)(["a"], lengths=[90]) == [-0.5]
    assert overlong_penalty(["a"], lengths=[90], max_new_tokens=100) == [-0.5]  # buffer 20 by default
    with pytest.raises(ValueError, match="needs token lengths"):
        overlong_penalty(["a"], max_new_tokens=100)
    with pytest.raises(ValueError, match="max_new_tokens"):
        overlong_penalty(["a"], lengths=[1])


def test_cosine_shape():
    ends = (cosine_value(True, 0, 1000), cosine_value(True, 1000, 1000), cosine_value(False, 0, 1000), cosine_value(False, 1000, 1000))
    assert ends == (2.0, 1.0, -10.0, 0.0)
    correct = [cosine_value(True, n, 1000) for n in range(0, 1001, 50)]
    wrong = [cosine_value(False, n, 1000) for n in range(0, 1001, 50)]
    assert correct == sorted(correct, reverse=True) and wrong == sorted(wrong)  # short right, long wrong preferred
    assert cosine_value(True, 500, 1000) == pytest.approx(1.5)
    assert cosine_value(True, 10, 1000, truncated=True) == -10.0
    assert math.isclose(cosine_value(True, 0, 10, correct_short=5.0), 5.0)


def test_cosine_uses_the_task_verifier_when_no_correct_column():
    task = KnightsKnavesTask(people=2)
    problem = task.problems("train", 1, 0)[0]
    good = f"<think>x</think> <answer>{problem.answer}</answer>"
    out = shaping.cosine_length_reward([good, "<think>x</think> <answer>?</answer>"], lengths=[0, 0],
                                       max_new_tokens=10, problems=[problem] * 2, task=task)
    assert out == [2.0, -10.0]


def test_repetition():
    assert repetition_value("the cat sat on the mat") == 0.0
    assert repetition_value("wait wait wait wait wait") == pytest.approx(-2 / 3)
    assert repetition_value("ab") == 0.0
    with pytest.raises(ValueError):
        repetition_value("a b c", max_penalty=0.5)


def test_combine_with_context():
    out = combine({"overlong": 1.0, "repetition": 0.5}, ["a b c d", "x x x x x"], lengths=[5, 10],
                  max_new_tokens=10, overlong_buffer=5)
    assert out.components["overlong"] == [0.0, -1.0]
    assert out.total[1] == pytest.approx(-1.0 + 0.5 * (-2 / 3))

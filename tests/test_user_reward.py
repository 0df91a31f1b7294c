"""User rewards by `module:function` or `file.py:function`, with loud contract errors."""

from __future__ import annotations

import sys
import textwrap

import pytest

from aha.rewards.base import get_reward
from aha.rewards.user import UserRewardError, load_user_reward
from aha.tasks.base import Problem

PROBLEMS = [Problem("2+2?", "4", "p0", {"level": 1}), Problem("3+3?", "6", "p1", {"level": 2})]
COMPLETIONS = ["<answer>4</answer>", "<answer>5</answer>"]
CONTEXT = {"problems": PROBLEMS, "task": object(), "infos": [{}, {}], "truncated": [False, True]}


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(textwrap.dedent('''
        def exact(completions, answer):
            return [1.0 if f"<answer>{a}</answer>" == c else 0.0 for c, a in zip(completions, answer)]

        def by_level(completions, *, level, truncated=None):
            return [None if t else float(lv) for lv, t in zip(level, truncated)]

        def sees_all(completions, **kwargs):
            return [float("task" in kwargs and "question" in kwargs)] * len(completions)

        def wants_unknown(completions, rubric):
            return [0.0] * len(completions)

        def no_args():
            return []

        def wrong_length(completions, **kw):
            return [1.0]

        def wrong_type(completions, **kw):
            return ["yes"] * len(completions)

        def not_a_list(completions, **kw):
            return 1.0

        CONSTANT = 3
    '''))
    return path


def test_file_path_spec(user_file):
    assert get_reward(f"{user_file}:exact")(COMPLETIONS, **CONTEXT) == [1.0, 0.0]
    assert load_user_reward(f"{user_file}:by_level")(COMPLETIONS, **CONTEXT) == [1.0, None]


def test_module_spec(user_file, monkeypatch):
    monkeypatch.syspath_prepend(str(user_file.parent))
    sys.modules.pop("my_rewards", None)
    assert get_reward("my_rewards:exact")(COMPLETIONS, **CONTEXT) == [1.0, 0.0]


def test_internals_only_with_kwargs(user_file):
    assert load_user_reward(f"{user_file}:sees_all")(COMPLETIONS, **CONTEXT) == [1.0, 1.0]


@pytest.mark.parametrize("spec, message", [
    ("no_such_module_xyz:fn", "module 'no_such_module_xyz' not found"),
    ("/nonexistent/file.py:fn", "not found"),
    ("{file}:missing", "has no function 'missing'; callables there: "),
    ("{file}:CONSTANT", "is a int, not a function"),
    ("{file}:no_args", "must take the completions list"),
    ("just_a_name", "expected 'module:function'"),
])
def test_load_errors(user_file, spec, message):
    with pytest.raises(UserRewardError, match=message):
        load_user_reward(spec.format(file=user_file))


@pytest.mark.parametrize("name, message", [
    ("wants_unknown", r"needs column\(s\) \['rubric'\]; available: "),
    ("wrong_length", "returned 1 values for 2 completions"),
    ("wrong_type", r"returned 'yes' \(str\) at index 0"),
    ("not_a_list", "must return a list of 2 floats or None, got float"),
])
def test_call_errors(user_file, name, message):
    fn = load_user_reward(f"{user_file}:{name}")
    with pytest.raises(UserRewardError, match=message):
        fn(COMPLETIONS, **CONTEXT)

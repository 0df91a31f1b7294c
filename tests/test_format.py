"""The R1 format reward and answer extraction, edge cases first."""

import pytest

from aha.rewards import combine
from aha.rewards.format import format_reward
from aha.tasks import get_task
from aha.tasks.base import Problem
from aha.template import R1_ZERO_TEMPLATE, build_prompt, parse_response, think_text

GOOD = "<think>7*86=602<=645 ok</think> <answer>7</answer>"


@pytest.mark.parametrize("completion,reason", [
    (GOOD, ""),
    (" <think>x</think>\n<answer>7</answer>\n", ""),
    ("<think>a</think><answer>1</answer><answer>2</answer>", "each tag must appear exactly once"),
    ("<think>a<think>b</think></think><answer>1</answer>", "each tag must appear exactly once"),
    ("<think>a</think> <answer>1", "each tag must appear exactly once"),  # unclosed
    ("<answer>1</answer>", "each tag must appear exactly once"),  # no thinking
    ("<answer>1</answer><think>a</think>", "expected <think>…</think> then <answer>…</answer>, nothing else"),
    ("<think>a</think> <answer>1</answer> and more", "expected <think>…</think> then <answer>…</answer>, nothing else"),
    ("preamble <think>a</think><answer>1</answer>", "expected <think>…</think> then <answer>…</answer>, nothing else"),
    ("<think>a</think><answer>  </answer>", "empty answer"),
    ("<think>a <answer>1</answer> </think>", "expected <think>…</think> then <answer>…</answer>, nothing else"),
])
def test_format_cases(completion, reason):
    parsed = parse_response(completion)
    assert parsed.reason == reason
    assert format_reward([completion]) == [1.0 if not reason else 0.0]


def test_truncated_output_gets_no_format_reward_even_if_shaped():
    assert format_reward([GOOD], truncated=[True]) == [0.0]
    assert parse_response(GOOD, truncated=True).reason == "truncated at the token limit"


def test_answer_is_read_even_when_format_is_broken():
    assert parse_response("<think>a</think><answer>1</answer><answer>2</answer>").answer == "2"
    assert parse_response("no tags at all").answer is None
    assert parse_response("<think>x</think><answer>数字 ٣</answer>").answer == "数字 ٣"


def test_think_text_variants():
    assert think_text(GOOD) == "7*86=602<=645 ok"
    assert think_text("<think>unclosed <answer>3</answer>") == "unclosed "
    assert think_text("plain") == "plain"


def test_template_is_the_papers_and_needs_a_slot():
    prompt = build_prompt("645 // 86")
    assert prompt.startswith("A conversation between User and Assistant.")
    assert prompt.endswith("User: 645 // 86. Assistant:")
    with pytest.raises(ValueError, match="placeholder"):
        build_prompt("x", template="no slot")
    assert R1_ZERO_TEMPLATE.count("{prompt}") == 1


def test_combine_weights_components_and_keeps_them():
    task = get_task("division")
    problem = Problem("645 // 86", "7", meta={"a": 645, "b": 86})
    completions = [GOOD, "<answer>7</answer>", "<think>x</think><answer>8</answer>"]
    scored = combine({"accuracy": 1.0, "format": 0.5}, completions, problems=[problem] * 3, task=task,
                     truncated=[False] * 3)
    assert scored.components == {"accuracy": [1.0, 1.0, 0.0], "format": [1.0, 0.0, 1.0]}
    assert scored.total == [1.5, 1.0, 0.5]
    assert scored.infos[2]["reason"] == "wrong value"


def test_bad_reward_return_is_a_clear_error():
    from aha.rewards.base import REWARDS

    REWARDS["broken_for_test"] = lambda completions, **_: [1.0]
    try:
        with pytest.raises(TypeError, match="must return a list of 2"):
            combine({"broken_for_test": 1.0}, ["a", "b"], problems=[], task=None, truncated=[])
    finally:
        del REWARDS["broken_for_test"]
    with pytest.raises(KeyError, match="valid rewards"):
        combine({"no_such_reward": 1.0}, ["a"])

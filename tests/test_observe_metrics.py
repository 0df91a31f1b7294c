"""Behaviour metrics on hand-made completions."""

import sys
import types

import pytest

from aha.observe.metrics import (
    all_equal_group_rate,
    behaviour_metrics,
    length_stats,
    marker_spans,
    reflection_count,
    repeated_ngram_rate,
    words,
)
from aha.tasks.division import DivisionTask

CHECK = "<think>8*86=688>645 too high, wait, 7*86=602<=645 ok</think> <answer>7</answer>"
SINGLE = "<think>8*86=688</think> <answer>8</answer>"
DIRECT = "<think>guess 8</think> <answer>8</answer>"
ENGLISH = "<think>x = 5. Hmm, wait. Let me check: actually x = 6.</think> <answer>6</answer>"


def test_legacy_call_still_works():
    # The trainer's existing positional call.
    m = behaviour_metrics([CHECK, SINGLE], [20, 10], [True, False], [False, True], DivisionTask.reflection_markers)
    assert m["response_length_mean"] == 15
    assert m["reflection_rate"] == 0.5
    assert m["truncation_rate"] == 0.5


def test_length_stats_split_by_correctness():
    m = length_stats([10, 20, 30, 40, 100], [True, True, False, False, True])
    assert m["response_length_mean"] == 40
    assert m["response_length_p50"] == 30
    assert m["response_length_p90"] == pytest.approx(76.0)  # numpy linear interpolation: 40 + 0.6·60
    assert m["response_length_correct_mean"] == pytest.approx(130 / 3)
    assert m["response_length_incorrect_mean"] == 35
    only_right = length_stats([5, 7], [True, True])
    assert "response_length_incorrect_mean" not in only_right  # undefined keys are left out, never NaN


def test_reflection_counts_whole_words_and_phrases():
    assert reflection_count("wait, wait... Let me check", ["wait", "let me check"]) == 3
    assert reflection_count("I awaited the look", ["wait", "ok"]) == 0  # no hits inside words
    assert reflection_count("Hmm. ACTUALLY no", ["hmm", "actually"]) == 2
    assert reflection_count("等等，我再检查一下", ["等等", "检查"]) == 2  # CJK: no word boundaries needed
    # The longer phrase wins over its prefix, so "let me check" is one reflection, not two.
    assert reflection_count("let me check", ["check", "let me check"]) == 1
    assert marker_spans("a wait b", ["wait"]) == [(2, 6)]


def test_reflection_rate_uses_lexicon_plus_task_markers():
    done = [CHECK, SINGLE, DIRECT, ENGLISH]
    m = behaviour_metrics(done, [1] * 4, [True] * 4, [False] * 4, ("too high", "ok"))
    # CHECK: too high, wait, ok (3); ENGLISH: hmm, wait, let me check, actually (4)
    assert m["reflection_rate"] == 0.5
    assert m["reflections_per_completion"] == pytest.approx(7 / 4)
    task_only = behaviour_metrics(done, [1] * 4, [True] * 4, [False] * 4, ("too high", "ok"), lexicon=None)
    assert task_only["reflections_per_completion"] == pytest.approx(2 / 4)
    zh = behaviour_metrics(["<think>等等，不对</think><answer>1</answer>"], [1], [True], [False], (), lexicon="zh")
    assert zh["reflection_rate"] == 1.0
    with pytest.raises(KeyError, match="known"):
        behaviour_metrics([CHECK], [1], [True], [False], (), lexicon="xx")


def test_reflections_only_count_in_the_thought():
    m = behaviour_metrics(["<think>7*86=602</think> <answer>wait 7</answer>"], [1], [True], [False], ("wait",))
    assert m["reflection_rate"] == 0.0


def test_all_equal_groups():
    rewards = [1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0]
    assert all_equal_group_rate(rewards, 4) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="groups of 5"):
        all_equal_group_rate(rewards, 5)
    m = behaviour_metrics([DIRECT] * 4, [3] * 4, [True] * 4, [False] * 4, (), rewards=[1, 1, 0, 1], group_size=2)
    assert m["group_all_equal_rate"] == 0.5
    assert "group_all_equal_rate" not in behaviour_metrics([DIRECT], [3], [True], [False], ())


def test_repeated_ngrams():
    assert repeated_ngram_rate("one two three four five six") == 0.0
    loop = "the cat sat " * 10
    assert repeated_ngram_rate(loop) > 0.85
    assert repeated_ngram_rate("a b c") == 0.0  # shorter than n
    assert repeated_ngram_rate("a b a b", n=2) == pytest.approx(1 / 3)  # (a b), (b a), (a b) again
    assert words("7*86=602, 三四") == ["7", "*", "86", "=", "602", ",", "三", "四"]


def test_language_mixing_through_the_language_detector(monkeypatch):
    # A stand-in for aha.rewards.language (owned by the rewards module): share of CJK words.
    fake = types.ModuleType("aha.rewards.language")

    def language_mixing_rate(text, target):
        ws = words(text)
        other = [w for w in ws if (w >= "\u4e00") != (target == "zh")]
        return len(other) / len(ws) if ws else 0.0

    fake.language_mixing_rate = language_mixing_rate
    monkeypatch.setitem(sys.modules, "aha.rewards.language", fake)
    done = ["<think>one two 三 四</think><answer>1</answer>", "<think>one two</think><answer>1</answer>"]
    m = behaviour_metrics(done, [1, 1], [True, True], [False, False], (), languages="en")
    assert m["language_mixing_rate"] == pytest.approx((0.5 + 0.0) / 2)
    per_prompt = behaviour_metrics(done, [1, 1], [True, True], [False, False], (), languages=["zh", "zh"])
    assert per_prompt["language_mixing_rate"] == pytest.approx((0.5 + 1.0) / 2)
    assert "language_mixing_rate" not in behaviour_metrics(done, [1, 1], [True] * 2, [False] * 2, ())


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="one entry each"):
        behaviour_metrics([CHECK], [1, 2], [True], [False], ())


def test_language_mixing_with_the_real_detector():
    pytest.importorskip("aha.rewards.language", reason="aha.rewards.language not written yet")
    done = ["<think>we add 3 and 4 得到 7</think><answer>7</answer>", "<think>add then carry</think><answer>7</answer>"]
    m = behaviour_metrics(done, [1, 1], [True, True], [False, False], (), languages="en")
    assert m["language_mixing_rate"] == pytest.approx((0.4 + 0.0) / 2)
